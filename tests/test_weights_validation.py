"""Every way a weights file can be wrong raises ``WeightsError`` naming the file (and the key, where there is one).

Converted files are damaged one way at a time, starting from a valid one written by ``save_converted``; the
unmodified control must load, so each failure is caused by the one change. The CLI path is checked in a
subprocess: exit status 3, one stderr line, no traceback, no output file.
"""

from __future__ import annotations

import os
import shutil
import pickle
import subprocess
import sys

import numpy as np
import pytest

from jaxstyle import PRESETS, load_vgg

from jaxstyle.nets import weights
from jaxstyle.errors import WeightsError
from weight_files import (gatys_state_dict, random_hwio, remove_large_files, torchvision_state_dict, write_keras,
                          write_torch)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """A valid converted VGG16 file and its arrays."""
    path = tmp_path_factory.mktemp("valid") / "vgg16.npz"
    weights.save_converted(path, "vgg16", random_hwio("vgg16", seed=5), PRESETS["caffe"], source="src.h5",
                           source_sha256="0" * 64, source_format="keras")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    yield path, arrays
    shutil.rmtree(path.parent, ignore_errors=True)


def write_variant(path, arrays, change):
    arrays = dict(arrays)
    change(arrays)
    np.savez(path, **arrays)  # np.savez pickles object arrays, which the loader must refuse to read
    return str(path)


def test_control_valid_file_loads(valid, tmp_path):
    path = write_variant(tmp_path / "ok.npz", valid[1], lambda a: None)
    model = load_vgg(path, arch="vgg16")
    assert model.arch == "vgg16" and model.preprocess.name == "caffe" and model.source == "src.h5"


def _delete(key):
    return lambda a: a.pop(key)


def _set(key, value_fn):
    def change(a):
        a[key] = value_fn(a[key] if key in a else None)
    return change


def _nonfinite(a):
    a["conv4_1/kernel"] = a["conv4_1/kernel"].copy()
    a["conv4_1/kernel"][1, 2, 3, 4] = np.inf


CASES = {
    "missing-kernel": (_delete("conv3_2/kernel"), "conv3_2/kernel"),
    "missing-bias": (_delete("conv5_3/bias"), "conv5_3/bias"),
    "missing-meta": (_delete("meta/preset"), "meta/preset"),
    "extra-key": (_set("conv5_4/kernel", lambda _: np.zeros((3, 3, 512, 512), np.float32)), "conv5_4/kernel"),
    "extra-junk": (_set("fc6/weight", lambda _: np.zeros(3, np.float32)), "fc6/weight"),
    "wrong-shape": (_set("conv2_1/kernel", lambda k: k[:, :, :32]), "conv2_1/kernel"),
    "transposed": (_set("conv3_1/kernel", lambda k: k.transpose(3, 2, 0, 1)), "conv3_1/kernel"),
    "wrong-dtype": (_set("conv1_1/bias", lambda b: b.astype(np.float64)), "conv1_1/bias"),
    "int-dtype": (_set("conv1_2/kernel", lambda k: k.astype(np.int32)), "conv1_2/kernel"),
    "non-finite": (_nonfinite, "conv4_1/kernel"),
    "nan-bias": (_set("conv2_2/bias", lambda b: b * np.nan), "conv2_2/bias"),
    "object-array": (_set("meta/source", lambda _: np.array([{"evil": 1}], dtype=object)), "meta/source"),
    "object-kernel": (_set("conv1_1/kernel", lambda _: np.array([None], dtype=object)), "conv1_1/kernel"),
    "bad-version": (_set("meta/format_version", lambda _: np.int64(99)), "version"),
    "version-not-an-integer": (_set("meta/format_version", lambda _: np.str_("two")),
                               "key 'meta/format_version' is not an integer"),
    "bad-arch": (_set("meta/arch", lambda _: np.str_("vgg11")), "meta/arch"),
    # Stored preprocessing constants: the image is divided by std, so zero or negative is refused, as is a
    # non-finite mean, std or scale, and a mean or std without three channels.
    "zero-std": (_set("meta/std", lambda s: np.array([0.2, 0.0, 0.2])), "preprocessing"),
    "negative-std": (_set("meta/std", lambda s: np.array([0.2, 0.2, -0.2])), "preprocessing"),
    "nan-std": (_set("meta/std", lambda s: np.array([np.nan, 0.2, 0.2])), "preprocessing"),
    "inf-mean": (_set("meta/mean", lambda m: np.array([0.4, np.inf, 0.4])), "preprocessing"),
    "nan-scale": (_set("meta/scale", lambda _: np.float64(np.nan)), "preprocessing"),
    "two-channel-mean": (_set("meta/mean", lambda m: np.asarray(m)[:2]), "preprocessing"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_converted_file(case, valid, tmp_path):
    change, key = CASES[case]
    path = write_variant(tmp_path / f"{case}.npz", valid[1], change)
    with pytest.raises(WeightsError) as e:
        load_vgg(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and key in message, message
    assert "\n" not in message
    assert message.endswith(" — convert it again with scripts/convert_weights.py"), message


def test_pickle_file_is_never_loaded(tmp_path):
    path = tmp_path / "weights.npz"
    with open(path, "wb") as f:
        pickle.dump({"conv1_1/kernel": np.zeros((3, 3, 3, 64), np.float32)}, f)
    with pytest.raises(WeightsError, match="pickle") as e:
        load_vgg(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.999])
def test_truncated_file(fraction, valid, tmp_path):
    data = valid[0].read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(WeightsError) as e:
        load_vgg(path)
    assert str(path) in str(e.value)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="directory") as e:
        load_vgg(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(WeightsError, match="no such file") as e:
        load_vgg(tmp_path / "nope.npz")
    assert str(tmp_path / "nope.npz") in str(e.value)


def test_other_architecture_than_requested(valid, tmp_path):
    with pytest.raises(WeightsError, match="vgg16 weights but vgg19 was requested") as e:
        load_vgg(valid[0], arch="vgg19")
    assert str(valid[0]) in str(e.value)
    vgg19 = tmp_path / "vgg19.npz"
    weights.save_converted(vgg19, "vgg19", random_hwio("vgg19"), PRESETS["torchvision"], source="s",
                           source_sha256="", source_format="torchvision")
    with pytest.raises(WeightsError, match="vgg19 weights but vgg16 was requested") as e:
        load_vgg(vgg19, arch="vgg16")
    assert str(vgg19) in str(e.value)


# ----------------------------------------------------------------------------------------------------- CLI


def _bad_sources(d):
    """Each: a source file that must be refused, and a word the message must contain."""
    hwio = random_hwio("vgg16", seed=9)
    truncated = d / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_keras(truncated, "vgg16", hwio)
    truncated.write_bytes(truncated.read_bytes()[:100_000])
    sd = torchvision_state_dict("vgg16", hwio)
    sd["features.28.weight"] = sd["features.28.weight"][:, :, :2]  # 3x2 kernel
    write_torch(d / "vgg16-397923af.pth", sd)
    gatys = gatys_state_dict(random_hwio("vgg19"))
    del gatys["conv5_4.bias"]
    write_torch(d / "vgg_conv.pth", gatys)
    (d / "weights.pkl").write_bytes(pickle.dumps({"a": 1}))
    (d / "random.bin").write_bytes(os.urandom(4096))
    return [(truncated, "HDF5"), (d / "vgg16-397923af.pth", "features.28.weight"), (d / "vgg_conv.pth", "conv5_4.bias"),
            (d / "weights.pkl", "pickle"), (d / "random.bin", "unknown weights format")]


def test_cli_bad_sources_exit_3_with_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
           "JAX_PLATFORMS": "cpu"}
    code = (  # one interpreter for every case keeps this quick; each case is a fresh run_subcommand call
        "import sys, runpy\n"
        "for src, out in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    sys.argv = ['convert_weights.py', src, '-o', out]\n"
        "    try:\n"
        f"        runpy.run_path({os.path.join(REPO, 'scripts', 'convert_weights.py')!r}, run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        print(f'EXIT {e.code}', file=sys.stderr, flush=True)\n"
    )
    cases = _bad_sources(tmp_path)
    outs = [tmp_path / f"out{i}.npz" for i in range(len(cases))]
    args = [str(x) for (src, _), out in zip(cases, outs) for x in (src, out)]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                            timeout=180)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    # Exactly one message line per case, followed by its exit status.
    assert len(lines) == 2 * len(cases), result.stderr
    for i, (src, word) in enumerate(cases):
        message, status = lines[2 * i], lines[2 * i + 1]
        assert status == "EXIT 3", (src, message, status)
        assert message.startswith("error: ") and str(src) in message and word in message, message
    assert not any(out.exists() for out in outs)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_cli_script_bad_source_real_process(tmp_path):
    """The literal ``python scripts/convert_weights.py`` invocation, once."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
           "JAX_PLATFORMS": "cpu"}
    bad = tmp_path / "vgg19.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "convert_weights.py"), str(bad), "-o",
                             str(tmp_path / "out.npz")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert str(bad) in result.stderr and not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_every_preset_and_field_round_trips_through_a_converted_file(preset, arch, tmp_path):
    # Each preset differs from the others in some field (channel order, scale, mean, std), so a field written
    # under another's key, or read from one, changes one of these round trips.
    path = tmp_path / "w.npz"
    convs = random_hwio(arch, seed=1)
    old = os.umask(0o027)
    try:
        weights.save_converted(path, arch, convs, PRESETS[preset], source="/somewhere/src.pth",
                               source_sha256="ab" * 32, source_format="torch", provenance={"from": preset})
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o640  # the permissions of a plain open(), not the temp file's 0600
    got_arch, params, preprocess, info = weights.load_converted(path)
    assert got_arch == arch and preprocess == PRESETS[preset]
    assert (info["source"], info["source_sha256"], info["source_format"]) == ("src.pth", "ab" * 32, "torch")
    assert info["provenance"] == {"from": preset} and info["arch"] == arch and info["preset"] == preset
    for name, (kernel, bias) in convs.items():
        np.testing.assert_array_equal(params["params"][name]["kernel"], kernel)
        np.testing.assert_array_equal(params["params"][name]["bias"], bias)


@pytest.mark.parametrize("stored, problem", [
    ("{not json", "key 'meta/provenance' is not valid JSON (Expecting property name enclosed in double quotes: "
                  "line 1 column 2 (char 1))"),
    ("[1, 2]", "key 'meta/provenance' is not a JSON object"),
], ids=["not-json", "not-an-object"])
def test_bad_provenance_is_refused_with_file_problem_and_fix(valid, tmp_path, stored, problem):
    path = write_variant(tmp_path / "bad.npz", valid[1], _set("meta/provenance", lambda _: np.array(stored)))
    with pytest.raises(WeightsError) as info:
        load_vgg(path)
    assert str(info.value) == f"{path}: {problem} — convert it again with scripts/convert_weights.py"


def test_files_that_are_not_converted_weights_are_named_word_for_word(valid, tmp_path):
    fix = "convert it again with scripts/convert_weights.py"
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "single.npy", np.zeros(3, np.float32))
    (tmp_path / "text.npz").write_text("hello")
    with open(tmp_path / "pickled.npz", "wb") as f:
        pickle.dump({"a": 1}, f)
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3, np.float32))
    cases = {
        tmp_path: "is a directory, not a weights file — pass the .npz file itself",
        tmp_path / "empty.npz": f"not a converted weights file (empty) — {fix}",
        tmp_path / "single.npy": f"not a converted weights file (a single .npy array) — {fix}",
        tmp_path / "text.npz": f"not a converted weights file (not a zip archive) — {fix}",
        tmp_path / "pickled.npz": "is a pickle, which is never loaded — convert the source with "
                                  "scripts/convert_weights.py",
        tmp_path / "foreign.npz": f"missing key 'meta/format_version' (not a jaxstyle converted file?) — {fix}",
    }
    for path, problem in cases.items():
        with pytest.raises(WeightsError) as e:
            load_vgg(path)
        assert str(e.value) == f"{path}: {problem}"


def test_a_member_damaged_inside_the_archive_is_named(valid, tmp_path):
    """The zip's directory intact, one member's bytes damaged: the key is named, with the fix."""
    import zipfile

    path = tmp_path / "damaged.npz"
    with zipfile.ZipFile(valid[0]) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, data[:20] if item.filename == "conv3_1/kernel.npy" else data)
    with pytest.raises(WeightsError) as e:
        load_vgg(path)
    message = str(e.value)
    assert message.startswith(f"{path}: key 'conv3_1/kernel' is unreadable or truncated (")
    assert message.endswith(") — convert it again with scripts/convert_weights.py")
    # A member that needs pickle is named as such, not as damaged.
    pickled = write_variant(tmp_path / "objects.npz", valid[1],
                            _set("conv1_1/kernel", lambda _: np.array([None], dtype=object)))
    with pytest.raises(WeightsError, match=r"key 'conv1_1/kernel' holds pickled objects \(Object arrays cannot"):
        load_vgg(pickled)


def test_provenance_is_stored_with_sorted_keys(tmp_path):
    """Equal conversions write equal files: the provenance JSON does not depend on the caller's key order."""
    for name, provenance in (("a.npz", {"zeta": 1, "alpha": [2, 3]}), ("b.npz", {"alpha": [2, 3], "zeta": 1})):
        weights.save_converted(tmp_path / name, "vgg16", random_hwio("vgg16", seed=5), PRESETS["caffe"], source="s",
                               source_sha256="0" * 64, source_format="keras", provenance=provenance)
        with np.load(tmp_path / name, allow_pickle=False) as z:
            assert str(z["meta/provenance"]) == '{"alpha": [2, 3], "zeta": 1}'
