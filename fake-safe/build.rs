//! Compiles the SPIFFE Workload API proto for the fake Workload API server.
//! protox is a pure-Rust protobuf compiler, so no `protoc` is needed; it
//! also supplies `google/protobuf/struct.proto`.

const PROTO_DIR: &str = "proto";
const PROTO: &str = "proto/workload.proto";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
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
