"""Software prefetch for numba kernels: ``prefetch(array, i)`` and ``prefetch_row(array, i)``
ask the CPU to bring the cache line of ``array[i]`` (``array[i, 0]``) in without waiting.

A hash lookup in a table larger than the caches costs a memory round trip per key (about
200 ns on the machines mpips was measured on); a loop that prefetches the slot of the key a
few iterations ahead keeps many of those trips in flight at once. A prefetch never faults,
so an index past the end only wastes the hint; the kernels still prefetch only valid ones.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _emit_prefetch(context, builder, aryty, array, indices) -> None:
    ary = context.make_array(aryty)(context, builder, array)
    ptr = cgutils.get_item_pointer(context, builder, aryty, ary, indices, wraparound=False,
                                   boundscheck=False)
    bytes_ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
    i32 = ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [bytes_ptr.type, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    # read (0), highest temporal locality (3), data cache (1)
    builder.call(fn, [bytes_ptr, i32(0), i32(3), i32(1)])


@intrinsic
def prefetch(typingctx, array, index):
    """Prefetch the line of ``array[index]`` (1-D array, any dtype; ``index`` an integer)."""
    if not isinstance(array, types.Array) or array.ndim != 1 or \
            not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        _emit_prefetch(context, builder, signature.args[0], args[0], [idx])
        return context.get_dummy_value()

    return types.void(array, index), codegen


@intrinsic
def prefetch_row(typingctx, array, row):
    """Prefetch the line of ``array[row, 0]`` (2-D array; ``row`` an integer)."""
    if not isinstance(array, types.Array) or array.ndim != 2 or \
            not isinstance(row, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        zero = context.get_constant(types.intp, 0)
        _emit_prefetch(context, builder, signature.args[0], args[0], [idx, zero])
        return context.get_dummy_value()

    return types.void(array, row), codegen
