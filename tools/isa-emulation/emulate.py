"""Runs the SIMD kernels' unit tests on an emulated Sapphire Rapids CPU (AVX-512 with
AVX512_BF16, AVX512_VNNI and AVX-VNNI), for development machines that lack those units.

Usage: python emulate.py target/release/libvgg_isa_emulation.so  (run.sh sets it up)

The emulator is Bochs's CPU (`bochscpu-python`): a CPU without an operating system. This
script loads the shared library built from this folder into its memory (program segments,
relocations), gives it the few C library functions it calls (memcpy and kin as machine code,
`__tls_get_addr` answered from here), and calls `vgg_isa_run_kernel_check(i)` in 64-bit
ring 0 for each check `i`, from a freshly loaded library each time. A call to any other C
library function, or a CPU exception, fails that check with its name. Prints the report;
exits 0 only if every check passed.
"""

import ctypes
import os
import re
import struct
import subprocess
import sys

import bochscpu
import bochscpu.cpu
import bochscpu.memory

PAGE = 4096
SO_BASE = 0x1000_0000
STUBS = 0x0800_0000
TRAPS = 0x0900_0000  # unmapped: a call here faults, and the address names the function
RETURN_TRAP = TRAPS + 0xF_0000
STACK = 0x0A00_0000
STACK_BYTES = 1 << 20
# Where the return address lies at the entry: 8 below a 16-byte boundary, as after a `call`.
ENTRY_RSP = STACK + STACK_BYTES - 72
TLS = 0x0B00_0000
PML4 = 0x0F00_0000
ENTRY = "vgg_isa_run_kernel_check"
REPORT = "VGG_ISA_REPORT"
NO_SUCH_CHECK = 1
FUTEX, FUTEX_WAKE_PRIVATE = 202, 0x81
# C library calls answered with a fixed result: file lookups fail as they would without the
# files (the gemm crate reads the CPU's cache sizes from /sys, and falls back to CPUID when
# it cannot); thread-exit destructors are accepted and never run (the thread never exits).
CALL_RESULTS = {"opendir": 0, "open": -1, "open64": -1, "__cxa_thread_atexit_impl": 0}
ERRNO = STACK  # errno: a word at the bottom of the stack, ENOENT (as the failed lookups say)
ENOENT = 2

# Machine code of the memory functions (System V ABI), assembled from the listing beside each.
STUB_CODE = {
    # mov rax,rdi; mov rcx,rdx; rep movsb; ret
    "memcpy": "4889f8 4889d1 f3a4 c3",
    # mov rax,rdi; mov rcx,rdx; cmp rdi,rsi; jbe fwd; lea rsi,[rsi+rcx-1];
    # lea rdi,[rdi+rcx-1]; std; rep movsb; cld; ret; fwd: rep movsb; ret
    "memmove": "4889f8 4889d1 4839f7 760f 488d740eff 488d7c0fff fd f3a4 fc c3 f3a4 c3",
    # mov r8,rdi; mov eax,esi; mov rcx,rdx; rep stosb; mov rax,r8; ret
    "memset": "4989f8 89f0 4889d1 f3aa 4c89c0 c3",
    # xor eax,eax; test rdx,rdx; jz end; loop: movzx eax,[rdi]; movzx ecx,[rsi];
    # sub eax,ecx; jnz end; inc rdi; inc rsi; dec rdx; jnz loop; end: ret
    "memcmp": "31c0 4885d2 7415 0fb607 0fb60e 29c8 750b 48ffc7 48ffc6 48ffca 75eb c3",
    # mov rax,rdi; loop: cmp byte [rax],0; je end; inc rax; jmp loop; end: sub rax,rdi; ret
    "strlen": "4889f8 803800 7405 48ffc0 ebf6 4829f8 c3",
}
STUB_CODE["bcmp"] = STUB_CODE["memcmp"]


class Elf:
    """The parts of an x86-64 shared library that loading it needs."""

    def __init__(self, data: bytes):
        if data[:4] != b"\x7fELF" or data[4] != 2 or struct.unpack_from("<H", data, 18)[0] != 62:
            raise SystemExit("error: not an x86-64 ELF64 shared library")
        self.data = data
        phoff, shoff = struct.unpack_from("<QQ", data, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 54)
        self.segments = []  # (type, flags, offset, vaddr, filesz, memsz)
        for i in range(phnum):
            p_type, flags, off, vaddr, _, filesz, memsz, _ = struct.unpack_from(
                "<IIQQQQQQ", data, phoff + i * phentsize
            )
            self.segments.append((p_type, flags, off, vaddr, filesz, memsz))
        self.sections = []  # (type, offset, size, link, entsize)
        for i in range(shnum):
            _, sh_type, _, _, off, size, link, _, _, entsize = struct.unpack_from(
                "<IIQQQQIIQQ", data, shoff + i * shentsize
            )
            self.sections.append((sh_type, off, size, link, entsize))
        self.symbols = self._dynamic_symbols()

    def _dynamic_symbols(self):
        """[(name, value, size, defined)] of .dynsym (section type 11)."""
        for sh_type, off, size, link, entsize in self.sections:
            if sh_type == 11:
                strtab = self.sections[link][1]
                out = []
                for j in range(size // entsize):
                    name, _, _, shndx, value, size = struct.unpack_from(
                        "<IBBHQQ", self.data, off + j * entsize
                    )
                    end = self.data.index(b"\0", strtab + name)
                    out.append((self.data[strtab + name : end].decode(), value, size, shndx != 0))
                return out
        raise SystemExit("error: the library has no dynamic symbol table")

    def relocations(self):
        """(offset, type, symbol index, addend) of every SHT_RELA section (type 4)."""
        for sh_type, off, size, _, entsize in self.sections:
            if sh_type == 4:
                for j in range(size // entsize):
                    r_offset, info, addend = struct.unpack_from("<QQq", self.data, off + j * entsize)
                    yield r_offset, info & 0xFFFF_FFFF, info >> 32, addend

    def symbol(self, name):
        """(address, size) of a symbol the library defines."""
        for sym, value, size, defined in self.symbols:
            if sym == name and defined:
                return value, size
        raise SystemExit(f"error: the library does not define {name}")


BOCHS_UNDEFINED_GATHER = re.compile(r"^v(p)?(gather|scatter)\S* .*\(.*,%zmm(1[6-9]|2[0-9]|3[01]),")


def prepare_code_for_bochs(path, code: bytearray, vaddr: int) -> int:
    """Refuses EVEX gathers and scatters indexed by zmm16-31, on which Bochs raises #UD
    (run.sh's build asks LLVM for none: `prefer-no-gather`), with a one-line error.
    Bochs scales the compressed 8-bit displacement of `vdpbf16ps` by 4 bytes (its
    broadcast element) even without broadcast, where the CPU scales it by the vector size:
    `vdpbf16ps zmm0, zmm1, [rdx-0x40]` reads `[rdx-4]` there. This rewrites each such
    displacement, in the emulator's copy of the code at `vaddr`, so that Bochs's scaling
    gives the address a real CPU uses. Returns how many it rewrote. (objdump finds them:
    capstone 5 does not decode AVX512_BF16.)"""
    listing = subprocess.run(
        ["objdump", "-d", "--insn-width=16", path], capture_output=True, text=True, check=True
    ).stdout
    patched = 0
    for line in listing.splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        address = int(fields[0].strip().rstrip(":"), 16)
        if BOCHS_UNDEFINED_GATHER.match(fields[2]):
            raise SystemExit(
                f"error: `{fields[2].strip()}` at {address:#x}: Bochs raises #UD on gathers and "
                "scatters indexed by zmm16-31; build with RUSTFLAGS=\"-C target-feature="
                "+prefer-no-gather,+prefer-no-scatter\" (as run.sh does)"
            )
        if not fields[2].startswith("vdpbf16ps") or "(" not in fields[2]:
            continue
        if not vaddr <= address < vaddr + len(code):
            continue  # in another segment
        raw = bytes.fromhex(fields[1].replace(" ", ""))
        if raw[0] != 0x62:
            raise SystemExit(f"error: `{fields[2]}` at {address:#x} does not start with EVEX")
        modrm = raw[5]
        if raw[3] & 0x10 or modrm >> 6 != 1:
            continue  # a broadcast (Bochs scales it right), or no 8-bit displacement
        at = 7 if modrm & 7 == 4 else 6  # after the SIB byte, if any
        disp8 = struct.unpack_from("<b", raw, at)[0]
        vector_bytes = 16 << ((raw[3] >> 5) & 3)
        wanted, bochs_scale = disp8 * vector_bytes, 4
        if not -128 <= wanted // bochs_scale <= 127:
            raise SystemExit(f"error: cannot re-encode `{fields[2]}` at {address:#x} for Bochs")
        code[address - vaddr + at] = (wanted // bochs_scale) & 0xFF
        patched += 1
    return patched


class Memory:
    """Identity-mapped guest memory (virtual = physical) on host pages."""

    def __init__(self):
        self.pages = {}
        self.table = bochscpu.memory.PageMapLevel4Table()

    def map(self, start, length):
        for page in range(start // PAGE * PAGE, start + length, PAGE):
            if page not in self.pages:
                hva = bochscpu.memory.allocate_host_page()
                bochscpu.memory.page_insert(page, hva)
                self.table.insert(page, page, 1)
                self.pages[page] = hva

    def commit(self):
        for hva, gpa in self.table.commit(PML4):
            bochscpu.memory.page_insert(gpa, hva)

    def _spans(self, address, length):
        done = 0
        while done < length:
            page, offset = divmod(address + done, PAGE)
            n = min(PAGE - offset, length - done)
            yield self.pages[page * PAGE] + offset, done, n
            done += n

    def write(self, address, data: bytes):
        for host, done, n in self._spans(address, len(data)):
            ctypes.memmove(host, data[done : done + n], n)

    def zero(self, address, length):
        for host, _, n in self._spans(address, length):
            ctypes.memset(host, 0, n)

    def read(self, address, length) -> bytes:
        return b"".join(ctypes.string_at(host, n) for host, _, n in self._spans(address, length))

    def u64(self, address):
        return struct.unpack("<Q", self.read(address, 8))[0]


class Library:
    """The library in guest memory; `reset` puts every byte back as a fresh load has it."""

    def __init__(self, path, elf: Elf, memory: Memory):
        self.elf, self.memory = elf, memory
        self.images = []  # (address, bytes, memsz) of every segment as loaded
        patched = 0
        for p_type, flags, off, vaddr, filesz, memsz in elf.segments:
            image = bytearray(elf.data[off : off + filesz])
            if p_type == 1:  # PT_LOAD
                if flags & 1:  # executable
                    patched += prepare_code_for_bochs(path, image, vaddr)
                self.images.append((SO_BASE + vaddr, image, memsz))
            elif p_type == 7:  # PT_TLS: one block, the initial image then zeros
                self.images.append((TLS, image, memsz))
        self.patched = patched
        for address, _, memsz in self.images:
            memory.map(address, memsz)
        memory.map(STUBS, PAGE)
        self.stubs = {name: STUBS + 128 * i for i, name in enumerate(STUB_CODE)}
        self.traps = {}
        for name, address in self.stubs.items():
            memory.write(address, bytes.fromhex(STUB_CODE[name].replace(" ", "")))
        self.relocated = self._relocate()
        memory.map(STACK, STACK_BYTES)

    def _relocate(self):
        """[(address, value)] of every relocation, resolved."""
        out = []
        for offset, r_type, sym, addend in self.elf.relocations():
            if r_type == 8:  # R_X86_64_RELATIVE
                value = SO_BASE + addend
            elif r_type == 16:  # R_X86_64_DTPMOD64: the library is TLS module 1
                value = 1
            elif r_type in (1, 6, 7):  # R_X86_64_64, GLOB_DAT, JUMP_SLOT
                name, symbol_value, _, defined = self.elf.symbols[sym]
                name = name.split("@")[0]
                if defined:
                    value = SO_BASE + symbol_value
                elif name in self.stubs:
                    value = self.stubs[name]
                else:
                    value = self.traps.setdefault(name, TRAPS + 16 * len(self.traps))
                value += addend if r_type == 1 else 0
            else:
                raise SystemExit(f"error: relocation type {r_type} is not supported")
            out.append((SO_BASE + offset, value & (2**64 - 1)))
        return out

    def reset(self):
        for address, image, memsz in self.images:
            self.memory.write(address, bytes(image))
            self.memory.zero(address + len(image), memsz - len(image))
        for address, value in self.relocated:
            self.memory.write(address, struct.pack("<Q", value))
        self.memory.write(ENTRY_RSP, struct.pack("<Q", RETURN_TRAP))

    def trap_name(self, address):
        return next((name for name, at in self.traps.items() if at == address), None)


def initial_state(entry, argument):
    state = bochscpu.State()
    bochscpu.cpu.set_long_mode(state)
    state.cr3 = PML4
    state.cr4 |= (1 << 9) | (1 << 10) | (1 << 18)  # OSFXSR, OSXMMEXCPT, OSXSAVE
    state.xcr0 = 0xE7  # x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
    state.mxcsr = 0x1F80
    state.fpcw = 0x37F
    state.rflags = 0x2
    state.rip, state.rsp, state.rdi = entry, ENTRY_RSP, argument
    code = bochscpu.Segment()
    code.present, code.selector, code.base, code.limit, code.attr = True, 0x08, 0, 0xFFFF_FFFF, 0x209B
    state.cs = code
    data = bochscpu.Segment()
    data.present, data.selector, data.base, data.limit, data.attr = True, 0x10, 0, 0xFFFF_FFFF, 0xC093
    state.ss = state.ds = state.es = state.fs = state.gs = data
    return state


def call(session, library, argument):
    """Calls the entry point with `argument`; returns (its result or None, why it stopped)."""
    library.reset()
    session.cpu.state = initial_state(SO_BASE + library.elf.symbol(ENTRY)[0], argument)
    raised = []

    def exception(sess, _cpu, vector, _error_code):
        raised.append(vector)
        sess.stop()

    hook = bochscpu.Hook()
    hook.exception = exception
    while True:
        raised.clear()
        session.run([hook])
        # The hook stops the CPU before the exception is delivered: the state is the faulting
        # one (at a trap: the call's target, with the return address on top of the stack).
        state = session.cpu.state
        if not raised:
            return None, f"the CPU stopped without an exception at {state.rip:#x}"
        if raised[0] == 14 and state.rip == RETURN_TRAP:
            return state.rax & 0xFFFF_FFFF, None  # a u32
        name = library.trap_name(state.rip)
        if raised[0] == 14 and name == "__tls_get_addr":
            state.rax = TLS + library.memory.u64(state.rdi + 8)
        elif raised[0] == 14 and name == "syscall" and (state.rdi, state.rdx) == (FUTEX, FUTEX_WAKE_PRIVATE):
            state.rax = 0  # one thread: nobody to wake
        elif raised[0] == 14 and name in CALL_RESULTS:
            state.rax = CALL_RESULTS[name] & (2**64 - 1)
        elif raised[0] == 14 and name == "__errno_location":
            library.memory.write(ERRNO, struct.pack("<i", ENOENT))
            state.rax = ERRNO
        elif name == "syscall":
            return None, f"a call to syscall({state.rdi}, {state.rsi:#x}, {state.rdx:#x}, ...)"
        elif name:
            return None, f"a call to {name}"
        else:
            return None, f"{bochscpu.cpu.ExceptionType(raised[0]).name} at {state.rip - SO_BASE:#x} in the library"
        state.rip, state.rsp = library.memory.u64(state.rsp), state.rsp + 8
        session.cpu.state = state


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: python emulate.py PATH/libvgg_isa_emulation.so")
    elf = Elf(open(sys.argv[1], "rb").read())
    memory = Memory()
    library = Library(sys.argv[1], elf, memory)
    memory.commit()
    report_address, report_bytes = elf.symbol(REPORT)
    report_address += SO_BASE
    session = bochscpu.Session()

    def missing_page(gpa):
        raise RuntimeError(f"the CPU touched unmapped physical memory at {gpa:#x}")

    session.missing_page_handler = missing_page
    passed, failed = 0, 0
    print(f"(worked around Bochs's vdpbf16ps displacement in {library.patched} instructions)")
    for index in range(1000):
        result, failure = call(session, library, index)
        text = memory.read(report_address, report_bytes)
        print(text[: text.index(b"\0")].decode(errors="replace"), end="")
        if result == NO_SUCH_CHECK:
            break
        if failure:
            failed += 1
            print(f"\n  (stopped on {failure})")
        else:
            passed += 1
    print(f"{passed} checks passed, {failed} failed, on the emulated CPU")
    sys.stdout.flush()
    # nanobind may crash while tearing bochscpu down at exit; the result is known by now.
    os._exit(1 if failed or not passed else 0)


if __name__ == "__main__":
    main()
