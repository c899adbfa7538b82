"""data.download and data.extra_train: a real archive served from a file:// URL, real files, real features."""

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.data import DataError, prepare
from pipeline.data.download import DownloadError, fetch_dataset
from pipeline.data.synthetic import write_wav
from pipeline.engine.progress import Reporter
from pipeline.engine.store import Store
from pipeline.recipe import RecipeLoader, load_recipe

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["yes", "no", "up", "down", "cat"]


def speech_commands_folder(root: Path, speakers: int = 6) -> Path:
    """A small folder in the Speech Commands layout: every word by every speaker, one speaker per split held out."""
    rng = np.random.default_rng(0)
    for word in WORDS:
        (root / word).mkdir(parents=True)
        for s in range(speakers):
            tone = np.sin(2 * np.pi * (200 + 50 * WORDS.index(word)) * np.arange(16000) / 16000) * 0.3
            write_wav(root / word / f"spk{s:03d}_nohash_0.wav", (tone + 0.01 * rng.standard_normal(16000)), 16000)
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "noise.wav", 0.1 * rng.standard_normal(32000), 16000)
    (root / "validation_list.txt").write_text("".join(f"{w}/spk004_nohash_0.wav\n" for w in WORDS))
    (root / "testing_list.txt").write_text("".join(f"{w}/spk005_nohash_0.wav\n" for w in WORDS))
    return root


def archive(folder: Path, path: Path) -> tuple[str, str]:
    """A .tar.gz of `folder`'s contents (at the top level, as Speech Commands ships); (file:// URL, SHA-256)."""
    with tarfile.open(path, "w:gz") as tar:
        for item in sorted(folder.iterdir()):
            tar.add(item, arcname=item.name)
    return path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    url, sha = archive(speech_commands_folder(base / "sc"), base / "speech_commands_v0.02.tar.gz")
    return base, url, sha


def test_fetch_resumes_verifies_and_unpacks(served, tmp_path):
    base, url, sha = served
    whole = (base / "speech_commands_v0.02.tar.gz").read_bytes()
    dest = tmp_path / "data" / "speech_commands_v2"
    dest.parent.mkdir()
    dest.with_name(dest.name + ".part").write_bytes(whole[: len(whole) // 2])  # an interrupted download
    seen: list[tuple[int, int]] = []
    fetch_dataset(url, sha, dest, lambda _, done, total: seen.append((done, total)))
    assert seen[0][0] > len(whole) // 2 and seen[-1] == (len(whole), len(whole))  # resumed, not restarted
    assert sorted(p.name for p in dest.iterdir()) == sorted([*WORDS, "_background_noise_", "testing_list.txt",
                                                             "validation_list.txt"])  # fmt: skip
    assert not dest.with_name(dest.name + ".part").exists()
    assert [p.name for p in dest.parent.iterdir()] == ["speech_commands_v2"]  # no staging folder left
    fetch_dataset("file:///nowhere/at/all.tar.gz", sha, dest)  # present: nothing fetched


def test_a_wrong_checksum_leaves_nothing(served, tmp_path):
    _, url, sha = served
    dest = tmp_path / "sc"
    with pytest.raises(DownloadError, match="does not match"):
        fetch_dataset(url, "0" * 64, dest)
    assert list(tmp_path.iterdir()) == []


def test_an_archive_reaching_outside_its_folder_is_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DownloadError, match="cannot unpack"):
        fetch_dataset(evil.as_uri(), hashlib.sha256(evil.read_bytes()).hexdigest(), tmp_path / "out" / "sc")
    assert not (tmp_path / "out" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "sc").exists()


def recipe_with(tmp_path: Path, **data: object) -> Path:
    recipe = yaml.load((ROOT / "tests/recipes/tiny.yaml").read_text(), Loader=RecipeLoader)  # YAML 1.2: yes is a word
    recipe["data"] |= data
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_recipe_downloads_then_mixes_in_own_recordings(served, tmp_path):
    _, url, sha = served
    own = speech_commands_folder(tmp_path / "mine", speakers=2)
    (own / "yes" / "broken.wav").write_bytes(b"not a wav")
    path = recipe_with(tmp_path, path="sc", download={"url": url, "sha256": sha}, extra_train=["mine"])
    store = Store(tmp_path / "cache")
    data, _ = prepare(load_recipe(path), store, warn=Reporter(quiet=True).warn)
    assert data.source == "speech_commands" and (tmp_path / "sc" / "yes").is_dir()
    plain, _ = prepare(load_recipe(recipe_with(tmp_path, path="sc")), store)  # the same folder, nothing mixed in
    own_clips = 4 * 2 + 2  # four keywords by two speakers of mine, plus `cat` from each as _unknown_
    assert len(data.train) == len(plain.train) + own_clips and len(data.val) == len(plain.val)
    assert np.array_equal(data.train.x[: len(plain.train)], plain.train.x)
    summary = data.summary()["extra_train"]
    assert summary == [{"path": str(own.resolve()), "clips": own_clips, "unreadable": 1, "converted": 0, "repeat": 1}]
    assert sum(s.startswith("mine/") for s in data.train.speakers) == own_clips
    assert not any(s.startswith("mine/") for s in [*data.val.speakers, *data.test.speakers])
    # `extra_train_repeat`: the same own clips, each three times, after the very same data set's clips
    tripled, _ = prepare(
        load_recipe(recipe_with(tmp_path, path="sc", extra_train=["mine"], extra_train_repeat=3)), store
    )
    assert len(tripled.train) == len(plain.train) + 3 * own_clips
    mine = tripled.train.x[len(plain.train) :]
    assert np.array_equal(mine, np.concatenate([data.train.x[len(plain.train) :]] * 3))


def test_bad_download_settings_are_named(served, tmp_path):
    _, url, _ = served
    with pytest.raises(DataError, match="data.download: .*does not match"):
        prepare(load_recipe(recipe_with(tmp_path, path="sc", download={"url": url, "sha256": "1" * 64})),
                Store(tmp_path / "cache"))  # fmt: skip
    with pytest.raises(DataError, match="data.extra_train: 'nope' does not exist"):
        prepare(load_recipe(recipe_with(tmp_path, extra_train=["nope"])), Store(tmp_path / "cache"))
