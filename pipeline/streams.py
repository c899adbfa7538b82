"""Long recordings with known keyword times, to judge a detector the way a device hears: continuously.

A stream is built from one-second clips, each keyword trimmed to where it is spoken and placed after a random gap,
with non-keyword words in some gaps, over background noise at a random level per five-second block, followed by a
keyword-free stretch (non-keyword words and noise only) for false accepts. Everything is drawn from a seed, so the
same recipe rebuilds the same stream. Three sources:

- `synthetic_stream`: a split of the recipe's data set (validation streams choose the detector's thresholds, test
  streams report them; the voices of the two are disjoint);
- `field_stream`: a folder of real recordings in the field-test layout (its `_silence_` clips are the noise);
- `read_stream`: a user's own long WAV with a label file (CSV `start,end,word` in seconds, or Audacity labels).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.speech_commands import SILENCE, UNKNOWN

BLOCK_S = 5.0  # background noise changes level (and file) this often
MARGIN_S = 0.05  # kept around a word's spoken part when it is trimmed from its clip


class LabelsError(ValueError):
    """A label file that cannot be read; the message names the file and line."""


@dataclass
class Stream:
    name: str
    audio: np.ndarray  # float32 mono at `sample_rate`
    sample_rate: int
    events: np.ndarray  # float64 [n, 3]: start s, end s, label index of each keyword said
    negative_seconds: float = 0.0  # length of the keyword-free stretch at the end (0: none marked)
    other_words: int = 0  # non-keyword words said (labelled or placed)
    other_spans: np.ndarray | None = None  # float64 [m, 2]: start s, end s of each placed non-keyword word

    @property
    def hours(self) -> float:
        return len(self.audio) / self.sample_rate / 3600

    def summary(self) -> dict:
        return {
            "name": self.name,
            "hours": round(self.hours, 4),
            "keywords": int(len(self.events)),
            "keyword_free_hours": round(self.negative_seconds / 3600, 4),
            "other_words": self.other_words,
        }


def spoken_span(clip: np.ndarray, sample_rate: int, floor_db: float = -30.0) -> tuple[int, int]:
    """[start, end) samples of the part of a clip louder than `floor_db` below its loudest 10 ms and 6 dB above
    its noise (its quietest tenth), widened by MARGIN_S; the whole clip if silent."""
    hop = sample_rate // 100
    frames = len(clip) // hop
    if frames == 0:
        return 0, len(clip)
    rms = np.sqrt(np.mean(clip[: frames * hop].reshape(frames, hop).astype(np.float64) ** 2, axis=1))
    if rms.max() <= 1e-5:
        return 0, len(clip)
    floor = max(rms.max() * 10 ** (floor_db / 20), 2 * np.percentile(rms, 10))
    loud = np.flatnonzero(rms >= min(floor, rms.max()))  # steady noise (floor above the peak): its loudest frame
    margin = int(MARGIN_S * sample_rate)
    return max(0, int(loud[0]) * hop - margin), min(len(clip), (int(loud[-1]) + 1) * hop + margin)


def compose(
    name: str,
    keywords: list[tuple[np.ndarray, int]],
    fillers: list[np.ndarray],
    backgrounds: list[np.ndarray],
    sample_rate: int,
    seed: int,
    gap_s: tuple[float, float],
    filler_share: float,
    background_gain: tuple[float, float],
    keyword_free_s: float,
) -> Stream:
    """Keywords (clip, label) in random order with gaps, some gaps holding a filler word, then `keyword_free_s`
    of fillers and gaps, over background noise."""
    rng = np.random.default_rng([seed, 29])
    pieces: list[tuple[int, np.ndarray]] = []  # (start sample, audio)
    events, others = [], []
    t = 0
    fill_order = rng.permutation(len(fillers)) if fillers else np.array([], int)
    used = 0

    def gap() -> int:
        return int(rng.uniform(*gap_s) * sample_rate)

    def place_filler() -> None:
        nonlocal t, used
        clip = fillers[int(fill_order[used % len(fillers)])]
        used += 1
        a, b = spoken_span(clip, sample_rate)
        pieces.append((t, clip[a:b]))
        others.append((t / sample_rate, (t + b - a) / sample_rate))
        t += b - a + gap()

    for i in rng.permutation(len(keywords)):
        clip, label = keywords[int(i)]
        t += gap()
        if fillers and rng.random() < filler_share:
            place_filler()
        a, b = spoken_span(clip, sample_rate)
        pieces.append((t, clip[a:b]))
        events.append((t / sample_rate, (t + b - a) / sample_rate, label))
        t += b - a
    t += gap()
    negative_start = t
    while fillers and t - negative_start < keyword_free_s * sample_rate:
        place_filler()
    t = max(t, negative_start + int(keyword_free_s * sample_rate))
    audio = np.zeros(t + gap(), np.float32)
    for start, piece in pieces:
        audio[start : start + len(piece)] += piece
    if backgrounds:
        block = int(BLOCK_S * sample_rate)
        for start in range(0, len(audio), block):
            bg = backgrounds[int(rng.integers(len(backgrounds)))]
            n = min(block, len(audio) - start)
            offset = int(rng.integers(0, max(1, len(bg) - n)))
            noise = np.resize(bg[offset:], n) if len(bg) - offset < n else bg[offset : offset + n]
            audio[start : start + n] += noise * np.float32(rng.uniform(*background_gain))
    np.clip(audio, -1.0, 32767 / 32768, out=audio)
    return Stream(name, audio, sample_rate, np.array(events, np.float64).reshape(-1, 3),
                  (len(audio) - negative_start) / sample_rate, used,
                  np.array(others, np.float64).reshape(-1, 2))  # fmt: skip


def synthetic_stream(root: Path, split: str, labels: list[str], cfg, sample_rate: int, clip_samples: int,
                     seed: int) -> Stream:  # fmt: skip
    """A stream from one split of a Speech Commands-layout data set: up to `cfg.keywords` keyword clips, balanced
    over the keywords, and every non-keyword word of the split as filler."""
    from pipeline.data.speech_commands import SPLITS, index_dataset, load_backgrounds, load_clips

    index = index_dataset(root, labels[2:], 0.0, 1e9, seed)[split]  # every non-keyword clip of the split
    rng = np.random.default_rng([seed, SPLITS.index(split), 31])
    by_label: dict[int, list] = {}
    for clip in index:
        by_label.setdefault(clip.label, []).append(clip)
    keyword_clips = _balanced([by_label.get(k, []) for k in range(2, len(labels))], cfg.keywords, rng)
    fillers = by_label.get(1, [])
    audio = load_clips(root, keyword_clips + fillers, clip_samples, [], seed)
    keywords = [(audio[i], c.label) for i, c in enumerate(keyword_clips)]
    return compose(f"synthetic-{split}", keywords, list(audio[len(keyword_clips) :]), load_backgrounds(root),
                   sample_rate, seed, cfg.gap_s, cfg.filler_share, cfg.background_gain,
                   cfg.negative_minutes * 60)  # fmt: skip


def field_stream(name: str, root: Path, labels: list[str], cfg, sample_rate: int, clip_samples: int,
                 seed: int) -> Stream:  # fmt: skip
    """A stream from a field-test folder: its keyword clips (balanced, up to `cfg.keywords`), its non-keyword
    clips once each as fillers and keyword-free stretch, its `_silence_` clips as the noise."""
    from pipeline.data.field import load_field_clips

    clips = load_field_clips(root, labels, sample_rate, clip_samples)
    rng = np.random.default_rng([seed, 37])
    groups = [list(np.flatnonzero(clips.y == k)) for k in range(2, len(labels))]
    chosen = _balanced(groups, cfg.keywords, rng)
    keywords = [(clips.audio[i], int(clips.y[i])) for i in chosen]
    fillers = list(clips.audio[clips.y == labels.index(UNKNOWN)])
    noise = [np.concatenate(list(clips.audio[clips.y == labels.index(SILENCE)]))] if np.any(clips.y == 0) else []
    share = min(1.0, cfg.filler_share)
    filler_seconds = sum(b - a for a, b in (spoken_span(f, sample_rate) for f in fillers))
    mean_gap = sum(cfg.gap_s) / 2
    # the keyword-free stretch uses each filler left after the gaps about once: never more audio than they make
    left = max(0, len(fillers) - share * len(keywords))
    keyword_free = left * (filler_seconds / sample_rate / max(1, len(fillers)) + mean_gap)
    return compose(name, keywords, fillers, noise, sample_rate, seed, cfg.gap_s, share, (1.0, 1.0),
                   min(keyword_free, cfg.negative_minutes * 60))  # fmt: skip


def cut_windows(stream: Stream, count: int, clip_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to `count` clips (float32 [n, clip_samples], labels, start samples) cut from a stream at random times,
    labelled as a streaming detector must answer them: a keyword heard whole keeps its label; a keyword less than
    half heard, or another word, is `_unknown_`; noise alone is `_silence_`. Windows holding more than half of a
    keyword but not all of it, or two whole keywords, are ambiguous and not used."""
    rng = np.random.default_rng([seed, 41])
    rate = stream.sample_rate
    events = stream.events
    others = stream.other_spans if stream.other_spans is not None else np.zeros((0, 2))
    starts, labels = [], []
    for _ in range(count * 4):
        if len(starts) == count or len(stream.audio) <= clip_samples:
            break
        start = int(rng.integers(0, len(stream.audio) - clip_samples))
        a, b = start / rate, (start + clip_samples) / rate
        heard = (np.minimum(b, events[:, 1]) - np.maximum(a, events[:, 0])) / (events[:, 1] - events[:, 0])
        whole = np.flatnonzero(heard >= 1.0 - 1e-9)
        if len(whole) > 1 or (len(whole) == 0 and np.any(heard > 0.5)):
            continue
        if len(whole) == 1:
            label = int(events[whole[0], 2])
        elif np.any(heard > 0) or np.any((others[:, 0] < b) & (others[:, 1] > a)):
            label = 1
        else:
            label = 0
        starts.append(start)
        labels.append(label)
    clips = np.stack([stream.audio[s : s + clip_samples] for s in starts]) if starts else np.zeros((0, clip_samples))
    return clips.astype(np.float32), np.array(labels, np.int64), np.array(starts, np.int64)


def training_windows(root: Path, labels: list[str], cfg, sample_rate: int, clip_samples: int, count: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """`count` windows cut from streams of the training split (`cut_windows`), a few minutes each with its own
    seed, so the detector's model learns the windows it will hear between and across words."""
    per_stream = 500
    parts, ys = [], []
    short = cfg.model_copy(update={"keywords": 100, "negative_minutes": 2.0})
    for i in range((count + per_stream - 1) // per_stream):
        stream = synthetic_stream(root, "train", labels, short, sample_rate, clip_samples, seed + 1000 + i)
        clips, y, _ = cut_windows(stream, min(per_stream, count - i * per_stream), clip_samples, seed + i)
        parts.append(clips)
        ys.append(y)
    return np.concatenate(parts), np.concatenate(ys)


def _balanced(groups: list[list], total: int, rng: np.random.Generator) -> list:
    """Up to `total` items taken round-robin over shuffled groups (every group as evenly as they allow)."""
    shuffled = [[g[int(i)] for i in rng.permutation(len(g))] for g in groups]
    out: list = []
    depth = 0
    while len(out) < total and any(depth < len(g) for g in shuffled):
        for g in shuffled:
            if depth < len(g) and len(out) < total:
                out.append(g[depth])
        depth += 1
    return out


def read_labels(path: Path, labels: list[str]) -> tuple[np.ndarray, int]:
    """(events [n, 3] of the keywords, count of other labelled words) from a CSV (`start,end,word`, seconds,
    an optional header) or an Audacity label file (tab-separated `start end word`; a point label spans 1 s)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"{path}: cannot read the label file ({exc})") from None
    tabbed = "\t" in text.split("\n", 1)[0]
    rows = list(csv.reader(text.splitlines(), delimiter="\t" if tabbed else ","))
    events, others = [], 0
    for line, row in enumerate(rows, 1):
        row = [c.strip() for c in row]
        if not row or not any(row) or row[0].startswith("#") or (tabbed and row[0] == "\\"):
            continue  # blank, comment, or Audacity's frequency line of a spectral label
        if len(row) < 3:
            raise LabelsError(f"{path}:{line}: expected start, end, word; got {len(row)} field(s)")
        try:
            start, end = float(row[0]), float(row[1])
        except ValueError:
            if line == 1 and not tabbed:
                continue  # a header
            raise LabelsError(f"{path}:{line}: start and end must be seconds, got '{row[0]}', '{row[1]}'") from None
        if not (np.isfinite(start) and np.isfinite(end)) or start < 0 or end < start:
            raise LabelsError(f"{path}:{line}: need 0 <= start <= end, got start {start}, end {end}")
        if end == start:
            end = start + 1.0
        word = row[2]
        if word in labels[2:]:
            events.append((start, end, labels.index(word)))
        else:
            others += 1
    if not events and not others:
        raise LabelsError(f"{path}: no labels in the file (expected start,end,word rows)")
    return np.array(sorted(events), np.float64).reshape(-1, 3), others


def read_stream(wav: Path, labels_file: Path, labels: list[str], sample_rate: int) -> Stream:
    """A user's recording and its labels; words that are not keywords count as other words (the detector must
    stay silent on them)."""
    from pipeline.data.field import read_any_wav

    try:
        audio, _ = read_any_wav(Path(wav), sample_rate)
    except Exception as exc:  # scipy's reader fails in many ways on a broken file
        raise LabelsError(f"{wav}: cannot read the recording ({type(exc).__name__}: {exc})") from None
    events, others = read_labels(labels_file, labels)
    seconds = len(audio) / sample_rate
    late = events[events[:, 0] >= seconds] if len(events) else events
    if len(late):
        raise LabelsError(f"{labels_file}: a label starts at {late[0, 0]:.2f} s, after the recording's end "
                          f"({seconds:.2f} s)")  # fmt: skip
    return Stream(Path(wav).stem, np.clip(audio, -1.0, 32767 / 32768).astype(np.float32), sample_rate, events,
                  0.0, others)  # fmt: skip
