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

/// Whether this machine has the CPU feature `name` (`avx2`, `fma`, `avx512f`, ...). A name
/// this build does not know is not had.
pub fn has_feature(name: &str) -> bool {
    FEATURES.iter().any(|(n, has)| *n == name && has())
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
    fn unknown_features_are_missing_and_named() {
        assert!(check_features(&[]).is_ok());
        let e = check_features(&["quantum-fma".to_string()]).unwrap_err();
        assert!(e.to_string().contains("lacks (quantum-fma)"), "{e}");
    }
}
