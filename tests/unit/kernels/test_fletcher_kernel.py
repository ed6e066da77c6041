"""mpips.kernels.fletcher against HDF5's loop (the reference) and against the checksums HDF5
itself stores after each chunk."""
import h5py
import numpy as np
import pytest

from mpips.kernels.fletcher import fletcher32
from mpips.kernels.fletcher_reference import fletcher32_reference


@pytest.mark.parametrize("n", [0, 1, 2, 3, 719, 720, 721, 4097])
@pytest.mark.parametrize("fill", ["random", 0x00, 0xFF, 0x80])
def test_kernel_matches_hdf5_loop(n, fill):
    data = (np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8) if fill == "random"
            else np.full(n, fill, np.uint8))
    assert fletcher32(data) == fletcher32_reference(data)


def test_kernel_matches_reference_across_blocks():
    data = np.random.default_rng(1).integers(0, 256, (2 << 20) + 7, dtype=np.uint8)
    assert fletcher32(data) == fletcher32_reference(data)


def test_kernel_matches_checksums_hdf5_stores(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {"f4": rng.standard_normal((3000, 3)).astype(np.float32),
              "u8": np.sort(rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64)),
              "ones": np.full(4096, -1, np.int32), "zeros": np.zeros(100, np.float32),
              "odd": np.arange(1001, dtype=np.uint8)}
    with h5py.File(tmp_path / "c.h5", "w") as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=a, chunks=(max(1, len(a) // 3),) + a.shape[1:],
                             fletcher32=True)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        for name in arrays:
            dset = f[name]
            for i in range(dset.id.get_num_chunks()):
                info = dset.id.get_chunk_info(i)
                _, raw = dset.id.read_direct_chunk(info.chunk_offset)
                raw = np.frombuffer(raw, np.uint8)
                stored = int.from_bytes(raw[-4:].tobytes(), "little")
                assert fletcher32(raw[:-4]) == stored, (name, i)


def test_kernel_releases_the_gil():
    """mpips.ckpt.chunkio checksums chunk k on a worker thread while it reads chunk k + 1:
    that overlap needs the kernel to run without the GIL."""
    assert fletcher32.targetoptions.get("nogil") is True
