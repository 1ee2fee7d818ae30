//! Cranelift code generation for fused bodies (being written).
