//! Compute device selection from the `[runtime]` section: `auto`, `flex` (pure-Rust CPU),
//! `tch` (libtorch CPU) or `tch-cuda` (libtorch CUDA), and CPU thread counts.

use std::sync::Once;

use burn::tensor::Device;

use crate::error::{Error, Result};

/// A selected device and a name for logs and manifests.
#[derive(Debug, Clone)]
pub struct Compute {
    pub device: Device,
    /// "flex", "tch" or "tch-cuda".
    pub kind: &'static str,
}

impl Compute {
    pub fn is_cuda(&self) -> bool {
        self.kind == "tch-cuda"
    }
}

/// Whether libtorch was linked with CUDA and sees a GPU.
pub fn cuda_available() -> bool {
    #[cfg(feature = "tch")]
    {
        tch::utils::has_cuda() && tch::Cuda::is_available()
    }
    #[cfg(not(feature = "tch"))]
    {
        false
    }
}

/// Whether this CPU multiplies bf16 natively (AVX-512 BF16 or AMX, from `/proc/cpuinfo`'s
/// first `flags` line; false where there is none).
pub fn cpu_has_native_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .filter(|l| l.starts_with("flags"))
            .take(1)
            .any(|l| {
                l.split_whitespace()
                    .any(|f| f == "avx512_bf16" || f == "amx_bf16")
            })
    })
}

/// What `precision = "auto"` picks on a device: bf16 matrix products where they are native
/// (CUDA; a libtorch CPU with AVX-512 BF16 or AMX), f32 elsewhere; and why, for the log.
pub fn auto_bf16(kind: &str, cpu_native_bf16: bool) -> (bool, &'static str) {
    match kind {
        "tch-cuda" => (true, "CUDA multiplies bf16 natively"),
        "tch" if cpu_native_bf16 => (true, "this CPU has AVX-512 BF16 or AMX"),
        "tch" => (false, "this CPU has neither AVX-512 BF16 nor AMX"),
        _ => (false, "the flex backend computes in f32"),
    }
}

static THREADS: Once = Once::new();

/// Keeps glibc's malloc from handing large blocks back to the kernel after every free; the
/// binaries call it first thing.
///
/// By default glibc serves blocks above a dynamic threshold with `mmap`, unmaps them on `free`
/// and trims the heap top, so tensors freed and allocated again each training step can come
/// back as fresh pages the kernel faults in and zeroes (`clear_page_erms` was up to 7 % of a
/// profiled CPU step, RESULTS.md). Here blocks up to 32 MiB (glibc's maximum) come from the heap
/// and the heap is trimmed only above 1 GiB free, so resident memory stays near its peak. A
/// `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or `MALLOC_TOP_PAD_` in the environment wins.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |env: &str, param: libc::c_int, value: libc::c_int| {
            if std::env::var_os(env).is_none() {
                // SAFETY: mallopt takes no pointers and glibc serialises it with the allocator.
                unsafe { libc::mallopt(param, value) };
            }
        };
        set("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 32 << 20);
        set("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, 1 << 30);
        set("MALLOC_TOP_PAD_", libc::M_TOP_PAD, 64 << 20);
    }
}

/// Sets CPU threads for libtorch and rayon once (0 = all cores).
pub fn set_threads(threads: usize) {
    THREADS.call_once(|| {
        let n = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
        #[cfg(feature = "tch")]
        tch::set_num_threads(n as i32);
    });
}

/// Picks the device named by `kind` (see the module docs).
pub fn select(kind: &str, threads: usize) -> Result<Compute> {
    set_threads(threads);
    let pick = match kind {
        "auto" => {
            if cuda_available() {
                "tch-cuda"
            } else if cfg!(feature = "tch") {
                "tch"
            } else {
                "flex"
            }
        }
        other => other,
    };
    #[allow(deprecated)]
    match pick {
        "flex" => Ok(Compute {
            device: Device::flex(),
            kind: "flex",
        }),
        #[cfg(feature = "tch")]
        "tch" => Ok(Compute {
            device: Device::libtorch(),
            kind: "tch",
        }),
        #[cfg(feature = "tch")]
        "tch-cuda" => {
            if !cuda_available() {
                return Err(Error::msg(
                    "device tch-cuda: libtorch sees no CUDA GPU (is this the CUDA build of torch, and is a GPU visible?); use device = \"tch\" or \"auto\"",
                ));
            }
            tch::Cuda::cudnn_set_benchmark(true);
            Ok(Compute {
                device: Device::libtorch_cuda(0),
                kind: "tch-cuda",
            })
        }
        other => Err(Error::msg(format!(
            "device `{other}` is not known: use {}",
            if cfg!(feature = "tch") {
                "auto, flex, tch or tch-cuda"
            } else {
                "auto or flex (this build has no `tch` feature, so no libtorch devices)"
            }
        ))),
    }
}

/// The devices of `n` data-parallel replicas after the first (which is `compute.device`): CUDA
/// GPUs 1..n with `tch-cuda`; on a CPU device, the same device again (the data-parallel path
/// runs, without a speed-up: for tests and for checking a recipe before a GPU run).
#[allow(deprecated)]
pub fn replica_devices(compute: &Compute, n: usize) -> Result<Vec<Device>> {
    if n <= 1 {
        return Ok(vec![]);
    }
    if compute.is_cuda() {
        let have = cuda_devices();
        if n > have {
            return Err(Error::msg(format!(
                "runtime.replicas = {n}, but libtorch sees {have} CUDA GPU(s): lower replicas, or make more GPUs visible (CUDA_VISIBLE_DEVICES)"
            )));
        }
        #[cfg(feature = "tch")]
        return Ok((1..n).map(|i| Device::libtorch_cuda(i)).collect());
    }
    tracing::warn!(
        "runtime.replicas = {n} on the CPU device `{}`: the replicas share its cores (data-parallel path, no speed-up)",
        compute.kind
    );
    Ok(vec![compute.device.clone(); n - 1])
}

/// How many CUDA GPUs libtorch sees.
pub fn cuda_devices() -> usize {
    #[cfg(feature = "tch")]
    {
        if cuda_available() {
            return tch::Cuda::device_count().max(0) as usize;
        }
    }
    0
}

/// The device from a stage's runtime params.
pub fn from_runtime(rt: &crate::dag::Params) -> Result<Compute> {
    let c = select(rt.str("device")?, rt.usize("threads")?)?;
    tracing::info!("compute device: {}", c.kind);
    Ok(c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn auto_precision_picks_bf16_only_where_native() {
        use super::auto_bf16;
        assert!(auto_bf16("tch-cuda", false).0);
        assert!(auto_bf16("tch", true).0);
        assert!(!auto_bf16("tch", false).0);
        assert!(!auto_bf16("flex", true).0);
        // This machine: the choice follows its flags.
        assert_eq!(
            auto_bf16("tch", super::cpu_has_native_bf16()).0,
            super::cpu_has_native_bf16()
        );
    }
}
