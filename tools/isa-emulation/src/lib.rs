//! The SIMD kernels' unit tests ([`vgg::engine::simd::kernel_checks`]) and one engine check
//! behind a C entry point, for `emulate.py` to run on an emulated CPU that has the units this
//! machine lacks.
//!
//! The emulator runs bare code: there is no operating system under it, and `emulate.py`
//! answers only the few C library calls it knows. So memory comes from a static arena, the
//! parallel work runs on the calling thread, the report is written into a static buffer that
//! the emulator reads back, and a panic (a failed check) records its message there before it
//! unwinds into the emulator's trap.

mod engine_check;

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use vgg::engine::simd::Isa;

/// Bytes of the arena; the checks' largest working set is a few MB at a time.
const ARENA_BYTES: usize = 96 << 20;

/// All the memory the checks get. Page-aligned so that its pages are the library's own (the
/// loader maps the library page by page).
#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: the emulated CPU runs one thread.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));
static ARENA_TOP: AtomicUsize = AtomicUsize::new(0);

/// A stack allocator on [`ARENA`]: freeing the newest block gives its bytes back (the checks
/// free their vectors in the reverse order of allocation, loop after loop); any other block
/// stays allocated until the run ends.
struct StackAllocator;

impl StackAllocator {
    fn base() -> usize {
        ARENA.0.get() as usize
    }

    /// Whether `ptr` of `size` bytes is the newest block: it ends at the top.
    fn is_newest(ptr: *mut u8, size: usize) -> bool {
        ptr as usize - Self::base() + size == ARENA_TOP.load(Relaxed)
    }
}

// SAFETY: blocks are aligned (the address, not just the offset), disjoint and inside the
// arena; out of room gives null.
unsafe impl GlobalAlloc for StackAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = Self::base();
        let start = (base + ARENA_TOP.load(Relaxed)).next_multiple_of(layout.align()) - base;
        let Some(end) = start
            .checked_add(layout.size())
            .filter(|&e| e <= ARENA_BYTES)
        else {
            return std::ptr::null_mut();
        };
        ARENA_TOP.store(end, Relaxed);
        // SAFETY: `start + size <= ARENA_BYTES`.
        unsafe { ARENA.0.get().cast::<u8>().add(start) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::is_newest(ptr, layout.size()) {
            ARENA_TOP.store(ptr as usize - Self::base(), Relaxed);
        }
    }

    /// Grows or shrinks the newest block where it lies (a growing `Vec` would otherwise
    /// leave a copy of itself behind at every step).
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize - Self::base();
        if Self::is_newest(ptr, layout.size()) && start + new_size <= ARENA_BYTES {
            ARENA_TOP.store(start + new_size, Relaxed);
            return ptr;
        }
        // SAFETY: the caller's layout is valid and `new_size` fits it (GlobalAlloc contract).
        let new =
            unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !new.is_null() {
            // SAFETY: both blocks hold at least the smaller size, and they do not overlap
            // (the new one lies above the old one's end).
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated here with `layout`.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: StackAllocator = StackAllocator;

/// Bytes of the report.
const REPORT_BYTES: usize = 1 << 16;

/// The report, NUL-terminated: one line per check, then the panic message of a failed one.
#[unsafe(no_mangle)]
pub static mut VGG_ISA_REPORT: [u8; REPORT_BYTES] = [0; REPORT_BYTES];

/// Appends to [`VGG_ISA_REPORT`], keeping a NUL at the end.
struct Report;

impl Write for Report {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        // SAFETY: one thread; the only reference to the report while it lives.
        let report = unsafe { &mut *std::ptr::addr_of_mut!(VGG_ISA_REPORT) };
        let len = report
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(REPORT_BYTES - 1);
        let n = s.len().min(REPORT_BYTES - 1 - len);
        report[len..len + n].copy_from_slice(&s.as_bytes()[..n]);
        Ok(())
    }
}

/// Runs check number `index` and reports it; returns 1 if there is no such check, else 0. The
/// checks: that the CPU has the units this is for, the kernels' unit tests
/// ([`vgg::engine::simd::kernel_checks`], each over every instruction set the CPU has), and
/// the engine check (on the best one). A failed check panics: its message ends the report.
#[unsafe(no_mangle)]
pub extern "C" fn vgg_isa_run_kernel_check(index: u32) -> u32 {
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(Report, "FAILED: {info}");
    }));
    // One worker, the calling thread: the emulator cannot start threads.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .use_current_thread()
        .build_global();
    let mut checks: Vec<(&str, fn())> = vec![(
        "the CPU has AVX512_BF16, AVX512_VNNI and AVX-VNNI",
        cpu_has_the_units,
    )];
    checks.extend(vgg::engine::simd::kernel_checks());
    checks.push((
        "engine: bf16 and int8 plans stay close to f32",
        engine_check::precisions_stay_close_to_f32,
    ));
    let Some((name, check)) = checks.get(index as usize) else {
        return 1;
    };
    if index == 0 {
        let names: Vec<&str> = Isa::available().iter().map(|isa| isa.name()).collect();
        let _ = writeln!(Report, "instruction sets: {}", names.join(", "));
    }
    let _ = write!(Report, "{name} ... ");
    check();
    let _ = writeln!(Report, "ok");
    0
}

/// Fails unless the CPU offers every kernel family this emulation exists to run (were the
/// emulator's CPU model to change, the checks would otherwise pass on fewer of them).
fn cpu_has_the_units() {
    let names: Vec<&str> = Isa::available().iter().map(|isa| isa.name()).collect();
    for wanted in ["avx512+bf16+vnni", "avx2+fma+vnni"] {
        assert!(names.contains(&wanted), "no {wanted} among {names:?}");
    }
}
