"""Data: resolve the recipe's source (real Speech Commands or the offline synthetic set), then cached features."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data.synthetic import SPLITS
from pipeline.engine.fingerprint import fingerprint
from pipeline.engine.store import Artifact, Store, digest
from pipeline.recipe import Recipe


class DataError(RuntimeError):
    pass


@dataclass
class Split:
    x: np.ndarray  # float32 [n, frames, coefficients]
    y: np.ndarray  # int64 [n]
    speakers: np.ndarray  # str [n]
    groups: np.ndarray  # str [n]: the voice a report groups by (synthetic: variant; real: speaker)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class FeatureSet:
    key: str
    labels: list[str]
    source: str
    root: Path
    train: Split
    val: Split
    test: Split
    extra_train: list[dict] = field(default_factory=list)  # the user's own recordings in the train split

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.train.x.shape[1:], 1)

    def split(self, name: str) -> Split:
        return getattr(self, name)

    def summary(self) -> dict:
        return {
            "source": self.source,
            "root": str(self.root),
            "labels": self.labels,
            "input_shape": list(self.input_shape),
            "clips": {s: len(self.split(s)) for s in SPLITS},
            "voices": {s: len(set(self.split(s).groups.tolist()) - {"_silence_"}) for s in SPLITS},
            "extra_train": self.extra_train,
        }


Progress = Callable[[str, int, int], None]
Warn = Callable[[str], None]


def _real_dataset_key(root: Path) -> str:
    """Identify a real data set folder by its listing (names, sizes, modification times), without reading 100k files."""
    from pipeline.data.field import listing_key

    return digest(listing_key(root, (".wav", ".txt")))


def resolve_source(
    recipe: Recipe, store: Store, progress: Progress | None = None, warn: Warn | None = None
) -> tuple[str, Path, str]:
    """Return (source name, data root, content key), generating the synthetic set if needed. A `data.path` that
    does not exist is never passed over in silence: an error, or a warning before any work when the recipe lets
    the run fall back to synthetic data."""
    data = recipe.data
    if data.path is not None:
        root = recipe.resolve_path(data.path).resolve()
        if not root.is_dir() and data.download:
            from pipeline.data.download import DownloadError, fetch_dataset

            try:
                fetch_dataset(data.download.url, data.download.sha256, root, progress)
            except DownloadError as exc:
                raise DataError(f"data.download: {exc}") from None
        if root.is_dir():
            return "speech_commands", root, _real_dataset_key(root)
        if not data.fallback_allowed:
            raise DataError(f"data.path '{data.path}' does not exist (looked for {root}) and data.fallback is "
                            f"'{data.fallback}'")  # fmt: skip
        if warn is not None:
            warn(
                f"data.path '{data.path}' does not exist (looked for {root}): using the offline synthetic set "
                "instead. Set `data.fallback: none` to make this an error."
            )

    from pipeline.data import flite, kokoro, piper, synthetic

    cfg = data.synthetic
    feats = data.features
    if cfg.flite_share:
        try:
            synthetic.check_flite_voices(cfg.flite_voices)
        except flite.FliteError as exc:
            raise DataError(str(exc)) from None
    if cfg.kokoro_share:
        try:
            synthetic.check_kokoro_voices(cfg.kokoro_voices)
        except kokoro.KokoroError as exc:
            raise DataError(str(exc)) from None
    if cfg.piper_share:
        try:
            synthetic.check_piper_voices(cfg.piper_voices)
        except piper.PiperError as exc:
            raise DataError(str(exc)) from None
    key = digest(
        {
            "synthetic": cfg.model_dump(mode="json"),
            "keywords": data.keywords,
            "seed": recipe.seed,
            "sample_rate": feats.sample_rate,
            "clip_samples": feats.clip_samples,
            "code": fingerprint("pipeline.data.synthetic"),
            "flite": flite.version() if cfg.flite_share else None,  # another flite speaks differently
            "kokoro": kokoro.version() if cfg.kokoro_share else None,  # its model, voices and ONNX Runtime
            "piper": piper.version(tuple(cfg.piper_voices)) if cfg.piper_share else None,
        }
    )

    def build(tmp: Path, meta: dict) -> None:
        meta["summary"] = synthetic.generate(
            tmp / "speech_commands",
            cfg,
            data.keywords,
            recipe.seed,
            feats.sample_rate,
            feats.clip_samples,
            on_progress=(lambda done, total: progress("synthesising speech", done, total)) if progress else None,
        )

    art = store.get_or_build("speech-synthetic", key, build)
    return "synthetic", art.path / "speech_commands", key


def prepare(
    recipe: Recipe, store: Store, progress: Progress | None = None, warn: Warn | None = None
) -> tuple[FeatureSet, Artifact]:
    """Features for every split, computed once per (data set, labels, features config) and cached."""
    from pipeline.data import features, speech_commands, synthetic
    from pipeline.data.field import listing_key, load_field_clips

    data = recipe.data
    extra_roots = [recipe.resolve_path(p).resolve() for p in data.extra_train]
    for path, root_ in zip(data.extra_train, extra_roots, strict=True):  # before any download or synthesis
        if not root_.is_dir():
            raise DataError(f"data.extra_train: '{path}' does not exist (looked for {root_})")
    source, root, source_key = resolve_source(recipe, store, progress, warn)
    key = digest(
        {
            "source": source_key,
            "keywords": data.keywords,
            "silence": data.silence_fraction,
            "unknown": data.unknown_fraction,
            "features": data.features.model_dump(mode="json"),
            "seed": recipe.seed,
            "extra_train": [listing_key(p) for p in extra_roots],
            "extra_train_repeat": data.extra_train_repeat if extra_roots else 1,
            "code": fingerprint("pipeline.data"),
            **({"stream_windows": data.stream_windows, "streams": _stream_settings(recipe).model_dump(mode="json"),
                "stream_code": fingerprint(STREAMS_MODULE)} if data.stream_windows else {}),
        }
    )  # fmt: skip

    def build(tmp: Path, meta: dict) -> None:
        try:
            index = speech_commands.index_dataset(
                root, data.keywords, data.silence_fraction, data.unknown_fraction, recipe.seed
            )
        except speech_commands.DataLayoutError as exc:
            raise DataError(str(exc)) from None
        backgrounds = speech_commands.load_backgrounds(root)
        voices = synthetic.read_voices(root)
        arrays = {}
        for i, split in enumerate(SPLITS):
            clips = index[split]
            if not clips:
                raise DataError(f"{root}: the {split} split is empty")
            if progress:
                progress(f"features ({split})", 0, len(clips))
            audio = speech_commands.load_clips(root, clips, data.features.clip_samples, backgrounds, recipe.seed + i)
            arrays[f"{split}_x"] = features.compute(audio, data.features)
            arrays[f"{split}_y"] = np.array([c.label for c in clips], np.int64)
            arrays[f"{split}_speakers"] = np.array([c.speaker for c in clips])
            arrays[f"{split}_groups"] = np.array(
                [voices[c.speaker]["variant"] if c.speaker in voices else c.speaker for c in clips]
            )
            if progress:
                progress(f"features ({split})", len(clips), len(clips))
        if data.stream_windows:
            training_windows = importlib.import_module(STREAMS_MODULE).training_windows
            if progress:
                progress("stream windows (train)", 0, data.stream_windows)
            clips, y = training_windows(root, data.labels, _stream_settings(recipe), data.features.sample_rate,
                                        data.features.clip_samples, data.stream_windows, recipe.seed)  # fmt: skip
            cut = {"x": features.compute(clips, data.features), "y": y, "speakers": np.full(len(y), "stream"),
                   "groups": np.full(len(y), "stream")}  # fmt: skip
            for name, values in cut.items():
                arrays[f"train_{name}"] = np.concatenate([arrays[f"train_{name}"], values])
            if progress:
                progress("stream windows (train)", len(y), data.stream_windows)
        extra = []
        for extra_root in extra_roots:
            clips = load_field_clips(extra_root, data.labels, data.features.sample_rate, data.features.clip_samples)
            if not len(clips.y):
                raise DataError(f"data.extra_train: no readable WAV in {extra_root} (expected <label>/<file>.wav)")
            speakers = np.array([f"{extra_root.name}/{field_speaker(f)}" for f in clips.files])
            own = {"x": features.compute(clips.audio, data.features), "y": clips.y.astype(np.int64),
                   "speakers": speakers, "groups": speakers}  # fmt: skip
            for name, values in own.items():
                repeated = np.concatenate([values] * data.extra_train_repeat)
                arrays[f"train_{name}"] = np.concatenate([arrays[f"train_{name}"], repeated])
            extra.append({"path": str(extra_root), "clips": int(len(clips.y)), "unreadable": len(clips.unreadable),
                          "converted": clips.converted, "repeat": data.extra_train_repeat})  # fmt: skip
        np.savez(tmp / "features.npz", **arrays)
        meta.update(source=source, root=str(root), labels=data.labels, extra_train=extra)

    art = store.get_or_build("features", key, build)
    return load_features(art), art


# Imported by name, not statically: the features' key then depends on the stream code only when a recipe cuts
# training windows from streams (the key says so), and editing it does not retrain every other recipe.
STREAMS_MODULE = "pipeline.streams"


def _stream_settings(recipe: Recipe):
    """How training streams are composed: the recipe's `streaming` section, or its defaults."""
    from pipeline.recipe import StreamingConfig

    return recipe.streaming or StreamingConfig()


def load_features(art: Artifact) -> FeatureSet:
    with np.load(art.file("features.npz")) as z:
        splits = {s: Split(z[f"{s}_x"], z[f"{s}_y"], z[f"{s}_speakers"], z[f"{s}_groups"]) for s in SPLITS}
    return FeatureSet(
        art.key, art.meta["labels"], art.meta["source"], Path(art.meta["root"]), **splits,
        extra_train=art.meta.get("extra_train", []),
    )  # fmt: skip


# --- field test sets ------------------------------------------------------------------------------------------


@dataclass
class FieldSet:
    """Features of one folder of real recordings, for judging models on people (never for training)."""

    name: str
    key: str
    root: Path
    x: np.ndarray  # float32 [n, frames, coefficients]
    y: np.ndarray
    speakers: np.ndarray
    unreadable: dict[str, str]
    converted: int

    def summary(self) -> dict:
        counts = np.bincount(self.y, minlength=0).tolist() if len(self.y) else []
        return {
            "name": self.name,
            "root": str(self.root),
            "clips": int(len(self.y)),
            "speakers": len(set(self.speakers[self.y != 0].tolist())),  # people: silence clips have none
            "per_class_clips": counts,
            "unreadable": len(self.unreadable),
            "unreadable_files": dict(list(self.unreadable.items())[:20]),
            "converted": self.converted,
        }


def synthetic_test_set(data: FeatureSet) -> FieldSet:
    """The synthetic test split in a field set's shape, so both are scored by the same code, side by side."""
    return FieldSet("synthetic", data.key, data.root, data.test.x, data.test.y, data.test.groups, {}, 0)


def field_speaker(rel: str) -> str:
    """Speaker of a Speech Commands file name: `<speaker>_nohash_<n>.wav` (`_unknown_`: `<word>_<speaker>_...`)."""
    stem = Path(rel).name.split("_nohash_")[0]
    return stem.split("_", 1)[1] if rel.startswith("_unknown_/") and "_" in stem else stem


def prepare_field_set(
    name: str, root: Path, labels: list[str], features_cfg, store: Store, progress: Progress | None = None
) -> FieldSet:
    """Features of a field folder, cached by its listing (names, sizes, modification times), labels and feature
    settings."""
    from pipeline.data import features
    from pipeline.data.field import listing_key, load_field_clips

    root = Path(root).resolve()
    key = digest(
        {
            "field": listing_key(root),
            "labels": labels,
            "features": features_cfg.model_dump(mode="json"),
            "code": fingerprint("pipeline.data.field", "pipeline.data.features"),
        }
    )

    def build(tmp: Path, meta: dict) -> None:
        if progress:
            progress(f"field test {name}: reading", 0, 1)
        clips = load_field_clips(root, labels, features_cfg.sample_rate, features_cfg.clip_samples)
        if not len(clips.y):
            raise DataError(f"field test '{name}': no readable WAV in {root} (expected <label>/<file>.wav folders)")
        x = features.compute(clips.audio, features_cfg)
        speakers = np.array([field_speaker(f) for f in clips.files])
        np.savez(tmp / "features.npz", x=x, y=clips.y, speakers=speakers)
        meta.update(unreadable=clips.unreadable, converted=clips.converted, files=clips.files)
        if progress:
            progress(f"field test {name}: reading", 1, 1)

    art = store.get_or_build("field", key, build)
    with np.load(art.file("features.npz")) as z:
        return FieldSet(name, key, root, z["x"], z["y"], z["speakers"], art.meta["unreadable"], art.meta["converted"])


def prepare_field_sets(
    recipe: Recipe, labels: list[str], store: Store, progress: Progress | None = None, warn: Warn | None = None
) -> list[FieldSet]:
    """Every field test the recipe lists; a missing optional one is skipped with a warning."""
    sets = []
    for test in recipe.data.field_tests:
        root = recipe.resolve_path(test.path)
        if not root.is_dir():
            message = f"field test '{test.name}': {test.path} does not exist (looked for {root.resolve()})"
            if not test.optional:
                raise DataError(message + "; mark it `optional: true` to run without it")
            if warn is not None:
                warn(message + ": skipped (optional)")
            continue
        fs = prepare_field_set(test.name, root, labels, recipe.data.features, store, progress)
        if fs.unreadable and warn is not None:
            names = ", ".join(list(fs.unreadable)[:3])
            warn(
                f"field test '{test.name}': {len(fs.unreadable)} unreadable file(s) skipped ({names}{', ...' if len(fs.unreadable) > 3 else ''})"
            )
        sets.append(fs)
    return sets
