//! Fake VSecM Safe and SPIFFE Workload API (placeholder).
