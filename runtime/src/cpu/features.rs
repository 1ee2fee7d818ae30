//! CPU features an artifact's contents may need, checked against this machine.

use lathe_compiler::artifact::ArtifactError;

/// A CPU feature's name and its check.
type Feature = (&'static str, fn() -> bool);

/// The CPU features this build can check for (x86 names, as `is_x86_feature_detected!`
/// spells them), each with its check.
#[cfg(target_arch = "x86_64")]
const FEATURES: &[Feature] = &[
    ("sse4.1", || std::arch::is_x86_feature_detected!("sse4.1")),
    ("sse4.2", || std::arch::is_x86_feature_detected!("sse4.2")),
    ("avx", || std::arch::is_x86_feature_detected!("avx")),
    ("avx2", || std::arch::is_x86_feature_detected!("avx2")),
    ("fma", || std::arch::is_x86_feature_detected!("fma")),
    ("avx512f", || std::arch::is_x86_feature_detected!("avx512f")),
    ("avx512bw", || {
        std::arch::is_x86_feature_detected!("avx512bw")
    }),
    ("avx512vnni", || {
        std::arch::is_x86_feature_detected!("avx512vnni")
    }),
];
#[cfg(not(target_arch = "x86_64"))]
const FEATURES: &[Feature] = &[];

/// Whether this machine has the CPU feature `name` (`avx2`, `fma`, `avx512f`, ...) and the
/// instruction-set cap ([`ISA_CAP_VAR`]) allows it. A name this build does not know is not had.
pub fn has_feature(name: &str) -> bool {
    isa_cap().allows(name) && FEATURES.iter().any(|(n, has)| *n == name && has())
}

/// The environment variable that caps the instruction sets kernels and generated code use,
/// so a wider machine can run (and time) what a narrower one runs: `avx2` hides AVX-512,
/// `sse` hides AVX, AVX2 and FMA as well. Unset or empty: no cap.
pub const ISA_CAP_VAR: &str = "LATHE_ISA";

/// The widest instruction set [`has_feature`] reports, set by [`ISA_CAP_VAR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsaCap {
    None,
    Avx2,
    Sse,
}

impl IsaCap {
    /// Reads a cap by the name [`ISA_CAP_VAR`] takes.
    pub fn parse(s: &str) -> Result<IsaCap, String> {
        match s {
            "" => Ok(IsaCap::None),
            "avx2" => Ok(IsaCap::Avx2),
            "sse" => Ok(IsaCap::Sse),
            _ => Err(format!(
                "{ISA_CAP_VAR}={s:?}: expected `avx2` (no AVX-512) or `sse` (no AVX)"
            )),
        }
    }

    /// Whether the cap lets code use the CPU feature `name`.
    fn allows(self, name: &str) -> bool {
        let avx512 = name.starts_with("avx512");
        match self {
            IsaCap::None => true,
            IsaCap::Avx2 => !avx512,
            IsaCap::Sse => !avx512 && !matches!(name, "avx" | "avx2" | "fma"),
        }
    }
}

/// The cap [`ISA_CAP_VAR`] sets, read once per process: an unknown value is an error
/// (callers that cannot report it run uncapped, after a warning).
pub fn isa_cap_checked() -> Result<IsaCap, String> {
    static CAP: std::sync::OnceLock<Result<IsaCap, String>> = std::sync::OnceLock::new();
    CAP.get_or_init(|| IsaCap::parse(&std::env::var(ISA_CAP_VAR).unwrap_or_default()))
        .clone()
}

fn isa_cap() -> IsaCap {
    isa_cap_checked().unwrap_or_else(|e| {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| tracing::warn!("{e}; running uncapped"));
        IsaCap::None
    })
}

/// Whether [`has_feature`] knows `name`.
pub fn knows_feature(name: &str) -> bool {
    FEATURES.iter().any(|(n, _)| *n == name)
}

/// Refuses contents that need CPU features this machine lacks, naming them.
pub fn check_features(needed: &[String]) -> Result<(), ArtifactError> {
    let missing: Vec<&str> = (needed.iter())
        .filter(|f| !has_feature(f))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ArtifactError::CpuFeatures {
            missing: missing.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hide_the_wider_sets() {
        assert!(IsaCap::None.allows("avx512f"));
        assert!(!IsaCap::Avx2.allows("avx512vnni") && IsaCap::Avx2.allows("fma"));
        assert!(!IsaCap::Sse.allows("avx2") && !IsaCap::Sse.allows("fma"));
        assert!(IsaCap::Sse.allows("sse4.1"));
        assert_eq!(IsaCap::parse("avx2"), Ok(IsaCap::Avx2));
        let e = IsaCap::parse("avx1024").unwrap_err();
        assert!(
            e.contains("LATHE_ISA=\"avx1024\"") && e.contains("avx2"),
            "{e}"
        );
    }

    #[test]
    fn unknown_features_are_missing_and_named() {
        assert!(check_features(&[]).is_ok());
        let e = check_features(&["quantum-fma".to_string()]).unwrap_err();
        assert!(e.to_string().contains("lacks (quantum-fma)"), "{e}");
    }
}
