"""Hostile ``.keras`` archives: a member that inflates past what it can honestly hold is refused before it is
read, in one line naming the file, the member and the limit, and the CLI exits 2 with memory bounded.

The archives are built here with zipfile (no Keras): the refusals happen before any Keras or model code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from resnet_core.cli import main
from resnet_core.io import WeightsFileError, read_weights
from resnet_core.io.keras_file import CONFIG_LIMIT, WEIGHTS_MEMBER, WEIGHTS_RATIO_FLOOR

MB = 2**20
FUNCTIONAL = json.dumps({"class_name": "Functional", "config": {"name": "m", "layers": []}}).encode()


def _write_zeros(zf: zipfile.ZipFile, name: str, size: int, head: bytes = b"") -> None:
    """A member of ``head`` then zeros, deflated at the highest level, written in chunks."""
    with zf.open(name, "w", force_zip64=size >= 2**31) as f:
        f.write(head)
        left = size - len(head)
        while left > 0:
            f.write(bytes(min(left, 4 * MB)))
            left -= 4 * MB


def _central_entry(data: bytearray, name: bytes) -> int:
    """The offset of ``name``'s entry in the archive's central directory."""
    at = data.rindex(b"PK\x05\x06")  # end of central directory record: the directory's offset at +16
    at = int.from_bytes(data[at + 16:at + 20], "little")
    while data[at + 46:at + 46 + len(name)] != name:
        at += 46 + sum(int.from_bytes(data[at + k:at + k + 2], "little") for k in (28, 30, 32))
    return at


def _config_bomb(path, size: int = 200 * MB) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        _write_zeros(zf, "config.json", size, b'{"class_name": "Functional"' + b" " * 64)
        zf.writestr(WEIGHTS_MEMBER, b"")


def test_a_config_inflating_past_the_limit_is_refused_by_its_header(tmp_path):
    path = tmp_path / "bomb.keras"
    _config_bomb(path)
    assert path.stat().st_size < MB  # 200 MB of whitespace and zeros, deflated
    with pytest.raises(WeightsFileError) as caught:
        read_weights(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and "config.json" in message and f"{CONFIG_LIMIT} allowed" in message


def test_a_member_whose_header_understates_its_size_is_refused(tmp_path):
    """The central directory says 100 bytes; the data inflates to 50 MB: zipfile stops at 100 and the CRC fails."""
    path = tmp_path / "liar.keras"
    _config_bomb(path, 50 * MB)
    data = bytearray(path.read_bytes())
    central = _central_entry(data, b"config.json")
    data[central + 24:central + 28] = (100).to_bytes(4, "little")  # the uncompressed size
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError, match="liar.keras.*(corrupt|CRC)"):
        read_weights(path)


def test_cli_info_exits_2_with_bounded_memory(tmp_path):
    """In a fresh process: refusing a 200 MB config bomb costs no more than a few MB of peak memory."""
    path = tmp_path / "bomb.keras"
    _config_bomb(path)
    script = (
        "import resource, sys\n"
        "from resnet_core.cli import main\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"code = main(['info', {str(path)!r}])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(code, (after - before) // 1024)\n"  # ru_maxrss is in KiB on Linux
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    code, grown_mb = map(int, run.stdout.split()[-2:])
    assert code == 2
    assert grown_mb < 20, f"peak RSS grew by {grown_mb} MB refusing a 200 MB member"
    assert "config.json" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_cli_info_names_the_refusal(tmp_path, capsys):
    path = tmp_path / "bomb.keras"
    _config_bomb(path, 10 * MB)
    assert main(["info", str(path)]) == 2
    assert "refusing to read it" in capsys.readouterr().err


def test_a_deflated_weights_member_past_the_ratio_is_refused_before_inflating(tmp_path):
    path = tmp_path / "weights_bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("config.json", FUNCTIONAL)
        _write_zeros(zf, WEIGHTS_MEMBER, WEIGHTS_RATIO_FLOOR + MB)
    with pytest.raises(WeightsFileError, match=f"{WEIGHTS_MEMBER} inflates to .* refusing to read it"):
        read_weights(path)


def test_a_stored_member_claiming_more_than_the_archive_holds_is_refused(tmp_path):
    path = tmp_path / "short.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("config.json", FUNCTIONAL)
        zf.writestr(WEIGHTS_MEMBER, b"\x89HDF" + bytes(1000))
    data = bytearray(path.read_bytes())
    central = _central_entry(data, WEIGHTS_MEMBER.encode())
    for field in (20, 24):  # compressed and uncompressed sizes, both stored
        data[central + field:central + field + 4] = (10**9).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError, match=f"short.keras is a corrupt zip archive: {WEIGHTS_MEMBER} claims"):
        read_weights(path)


@pytest.mark.keras
def test_a_weights_member_larger_than_its_datasets_is_refused(tmp_path, need):
    """Under the ratio's floor, a deflated member is inflated to a spool file, then measured against the
    datasets the HDF5 file declares: 20 MB of trailing zeros behind 4 KB of tensors is refused."""
    h5py = need("keras", "h5py")
    h5 = tmp_path / "w.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("layers/conv2d/vars/0", data=bytes(4096).hex().encode()[:4096])
    with open(h5, "ab") as f:
        f.write(bytes(20 * MB))  # HDF5 ignores what lies past its end-of-file address
    path = tmp_path / "padded.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("config.json", FUNCTIONAL)
        zf.write(h5, WEIGHTS_MEMBER)
    with pytest.raises(WeightsFileError, match=f"{WEIGHTS_MEMBER} inflates to .* but its datasets need"):
        read_weights(path)
