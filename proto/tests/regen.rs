//! The generated code under `src/gen/` is committed so that a build never runs codegen (and
//! needs no `protoc`). This test regenerates it with protox and fails on any difference.
//! To update after editing `backwatch.proto`: `BACKWATCH_REGEN=1 cargo test -p backwatch-proto --test regen`.

use std::path::Path;

#[test]
fn generated_code_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile_dir();
    let fds = protox::compile([root.join("backwatch.proto")], [root]).expect("compile proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&out)
        .compile_fds(fds)
        .expect("generate code");
    let fresh = std::fs::read_to_string(out.join("backwatch.v1.rs")).expect("generated file");
    let committed_path = root.join("src/gen/backwatch.v1.rs");
    if std::env::var_os("BACKWATCH_REGEN").is_some() {
        std::fs::write(&committed_path, &fresh).expect("write generated code");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "proto/src/gen/backwatch.v1.rs is stale: run BACKWATCH_REGEN=1 cargo test -p backwatch-proto --test regen"
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("backwatch-regen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
