#!/usr/bin/env python3
"""Mark a version requirement (e.g. GLIBC_2.38) of an ELF64 little-endian
shared object as weak (VER_FLG_WEAK) so that ld.so loads it on an older
glibc; the missing symbols are then supplied by an LD_PRELOADed shim.

Standard library only (no pyelftools). Usage:
    weaken-verneed.py IN.node OUT.node GLIBC_2.38
Exits non-zero if the file is not ELF64 LE or the version is not found.
"""
import struct
import sys

VER_FLG_WEAK = 0x2


def main():
    src, dst, wanted = sys.argv[1], sys.argv[2], sys.argv[3].encode()
    data = bytearray(open(src, 'rb').read())
    if data[:4] != b'\x7fELF' or data[4] != 2 or data[5] != 1:
        sys.exit(f'{src}: not an ELF64 little-endian file')
    e_shoff, = struct.unpack_from('<Q', data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from('<HHH', data, 0x3A)

    def section(i):
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info
        return struct.unpack_from('<IIQQQQII', data, e_shoff + i * e_shentsize)

    shstr_off = section(e_shstrndx)[4]

    def cstr(off):
        return bytes(data[off:data.index(b'\0', off)])

    SHT_GNU_VERNEED = 0x6FFFFFFE
    patched = 0
    for i in range(e_shnum):
        name, typ, _, _, off, size, link, info = section(i)
        if typ != SHT_GNU_VERNEED:
            continue
        strtab = section(link)[4]
        vn = off
        for _ in range(info):  # sh_info = number of Verneed entries
            _ver, cnt, _file, aux, nxt = struct.unpack_from('<HHIII', data, vn)
            va = vn + aux
            for _ in range(cnt):
                _hash, flags, other, vname, vnext = struct.unpack_from('<IHHII', data, va)
                if cstr(strtab + vname) == wanted:
                    struct.pack_into('<H', data, va + 4, flags | VER_FLG_WEAK)
                    patched += 1
                if vnext == 0:
                    break
                va += vnext
            if nxt == 0:
                break
            vn += nxt
    if not patched:
        sys.exit(f'{src}: no version requirement named {wanted.decode()}')
    open(dst, 'wb').write(data)
    print(f'weakened {patched} requirement(s) on {wanted.decode()} -> {dst}')


if __name__ == '__main__':
    main()
