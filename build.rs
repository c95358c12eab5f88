//! Compiles the SPIFFE Workload API proto for the fake Workload API server,
//! only when the `fake-safe` feature is on. protox is a pure-Rust protobuf
//! compiler, so no `protoc` is needed; it also supplies
//! `google/protobuf/struct.proto`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_FAKE_SAFE");
    if std::env::var_os("CARGO_FEATURE_FAKE_SAFE").is_some() {
        #[cfg(feature = "fake-safe")]
        compile_workload_proto();
    }
}

#[cfg(feature = "fake-safe")]
fn compile_workload_proto() {
    const PROTO_DIR: &str = "src/fake/proto";
    const PROTO: &str = "src/fake/proto/workload.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    // The proto has no package, so tonic-prost-build writes `$OUT_DIR/_.rs`.
    let fds = match protox::compile([PROTO], [PROTO_DIR]) {
        Ok(fds) => fds,
        Err(error) => panic!("cannot compile {PROTO}: {error}"),
    };
    if let Err(error) = tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(fds)
    {
        panic!("cannot generate the Workload API server from {PROTO}: {error}");
    }
}
