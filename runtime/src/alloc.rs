//! Process-wide allocator tuning for programs that load large models.
//!
//! glibc's `malloc` serves a request of at least its *mmap threshold* (128 KiB at start) with a
//! mapping of its own, which goes back to the operating system when freed. But the first time
//! such a block is freed, glibc raises the threshold to that block's size, so that later weights
//! (and the panels they are packed into) come from the heap, where freed memory mostly stays
//! resident. Loading a model frees many large blocks (each weight as read, each weight once
//! packed), so without tuning a process keeps tens of megabytes it no longer uses: about 1.65x
//! the weights of ResNet-50 resident at peak where 1.3x is live.

/// Fixes glibc's mmap threshold at 128 KiB, which also turns off its dynamic adjustment, so
/// that every large buffer is mapped on its own and returned to the system when freed. Call
/// it once at startup, before loading a model (the `lathe` binary does). It does nothing
/// where the C library is not glibc. Returns whether the setting took.
///
/// The cost: a large buffer allocated and freed on every call (an output tensor of a megabyte
/// or more) is mapped each time, page faults included, instead of being reused from the heap.
pub fn return_large_frees_to_os() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::c_int;
        /// glibc's `M_MMAP_THRESHOLD` (`malloc.h`).
        const M_MMAP_THRESHOLD: c_int = -3;
        extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        // SAFETY: `mallopt` only sets a parameter of glibc's allocator; it is thread-safe and
        // changes no allocation already made.
        unsafe { mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
