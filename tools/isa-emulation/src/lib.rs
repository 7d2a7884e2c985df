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

/// Bytes of the arena; the checks' largest working set is a few MB at a time.
const ARENA_BYTES: usize = 96 << 20;

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

// SAFETY: blocks are aligned, disjoint and inside the arena; out of room gives null.
unsafe impl GlobalAlloc for StackAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let start = ARENA_TOP.load(Relaxed).next_multiple_of(layout.align());
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
        let start = ptr as usize - ARENA.0.get() as usize;
        if start + layout.size() == ARENA_TOP.load(Relaxed) {
            ARENA_TOP.store(start, Relaxed);
        }
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

/// Runs kernel check number `index` (see [`vgg::engine::simd::kernel_checks`]) on every
/// instruction set the (emulated) CPU has, and reports it; returns 1 if there is no such
/// check, else 0. A failed check panics: its message ends the report.
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
    let mut checks = vgg::engine::simd::kernel_checks();
    checks.push((
        "engine: bf16 and int8 plans stay close to f32",
        engine_check::precisions_stay_close_to_f32,
    ));
    let Some((name, check)) = checks.get(index as usize) else {
        return 1;
    };
    if index == 0 {
        let isas = vgg::engine::simd::Isa::available();
        let names: Vec<&str> = isas.iter().map(|isa| isa.name()).collect();
        let _ = writeln!(Report, "instruction sets: {}", names.join(", "));
    }
    let _ = write!(Report, "{name} ... ");
    check();
    let _ = writeln!(Report, "ok");
    0
}
