"""Plain-Python oracle of mpips.kernels.fletcher: HDF5's H5_checksum_fletcher32 loop verbatim
(uint32 arithmetic, reductions every 360 words). Slow: tests only."""
import numpy as np


def fletcher32_reference(data: np.ndarray) -> int:
    """HDF5 Fletcher-32 of the bytes ``data`` (uint8 1-D)."""
    raw = bytes(np.asarray(data, np.uint8))
    sum1 = sum2 = 0
    pos, words = 0, len(raw) // 2
    while words:
        block = min(words, 360)
        words -= block
        for _ in range(block):
            sum1 = (sum1 + ((raw[pos] << 8) | raw[pos + 1])) & 0xFFFFFFFF
            pos += 2
            sum2 = (sum2 + sum1) & 0xFFFFFFFF
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    if len(raw) % 2:
        sum1 += raw[pos] << 8
        sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
    sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    return (sum2 << 16) | sum1
