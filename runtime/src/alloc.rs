//! Process-wide allocator tuning for programs that load large models.
//!
//! glibc's `malloc` serves a request of at least its *mmap threshold* (128 KiB at start) with a
//! mapping of its own, which goes back to the operating system when freed. But the first time
//! such a block is freed, glibc raises the threshold to that block's size, so that later weights
//! (and the panels they are packed into) come from the heap, where freed memory mostly stays
//! resident. Loading a model frees many large blocks (each weight as read, each weight once
//! packed), so left alone a process keeps tens of megabytes it no longer uses: about 1.65x the
//! weights of ResNet-50 resident at peak where 1.3x is live.
//!
//! Calls want the opposite: a buffer freed at the end of one call (an output, a copied input)
//! is best reused by the next from the heap, not mapped and faulted in again every time (which
//! costs a model with megabyte-sized outputs a fifth of its time). Hence two phases, which a
//! program sets in turn: [`AllocPhase::Load`] before loading and compiling, and
//! [`AllocPhase::Calls`] once the model is compiled. The `lathe` binary does.

/// What the allocator is tuned for (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocPhase {
    /// Loading and compiling: every large buffer is mapped on its own and returned to the
    /// system when freed (glibc's mmap threshold fixed at 128 KiB).
    Load,
    /// Running calls: buffers of up to 32 MiB come from the heap and, once freed, stay there
    /// for the next call (the threshold glibc would reach by itself, and twice that of free
    /// memory kept at the heap's top).
    Calls,
}

/// Tunes the C library's allocator for `phase`. Process-wide, so it is the program's choice:
/// the library never calls it. Does nothing where the C library is not glibc. Returns whether
/// the settings took.
pub fn tune_allocator(phase: AllocPhase) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::c_int;
        // glibc's parameters (`malloc.h`).
        const M_TRIM_THRESHOLD: c_int = -1;
        const M_MMAP_THRESHOLD: c_int = -3;
        extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        let (mmap, trim) = match phase {
            AllocPhase::Load => (128 << 10, 128 << 10),
            AllocPhase::Calls => (32 << 20, 64 << 20),
        };
        // SAFETY: `mallopt` only sets parameters of glibc's allocator; it is thread-safe and
        // changes no allocation already made.
        unsafe { mallopt(M_MMAP_THRESHOLD, mmap) == 1 && mallopt(M_TRIM_THRESHOLD, trim) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = phase;
        false
    }
}
