//! Images: what is refused, and compiled code cached once per digest.

use ledge_runtime::{Exit, Prepared, Runtime};

use crate::common::*;

#[tokio::test]
async fn a_file_that_is_not_wasm_is_an_invalid_image() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let path = dir.path().join("script.wasm");
    std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
    let err = rt
        .start(spec(dir.path(), "script", &path))
        .await
        .err()
        .unwrap();
    assert_eq!(err.reason(), "InvalidImage");
    let message = err.to_string();
    assert!(
        message.contains("is not a WebAssembly module or component"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_artifact_is_image_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let err = rt
        .start(spec(dir.path(), "gone", &dir.path().join("gone.wasm")))
        .await
        .err()
        .unwrap();
    assert_eq!(err.reason(), "ErrImageNeverPull");
}

#[tokio::test]
async fn a_module_that_does_not_compile_is_an_invalid_image() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let path = dir.path().join("broken.wasm");
    // A valid header, then a type section that claims more than there is.
    std::fs::write(&path, b"\0asm\x01\0\0\0\x01\x05\x01\x60").unwrap();
    let err = rt
        .start(spec(dir.path(), "broken", &path))
        .await
        .err()
        .unwrap();
    assert_eq!(err.reason(), "InvalidImage");
    let message = err.to_string();
    assert!(message.contains("does not compile"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[tokio::test]
async fn a_module_without_start_is_an_invalid_image() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let path = wat_file(dir.path(), "lib", r#"(module (func (export "add")))"#);
    let err = rt
        .start(spec(dir.path(), "lib", &path))
        .await
        .err()
        .unwrap();
    assert_eq!(err.reason(), "InvalidImage");
    assert!(err.to_string().contains("_start"), "{err}");
}

#[tokio::test]
async fn a_component_of_another_world_is_an_invalid_image() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let err = rt
        .start(spec(dir.path(), "reactor", &fixture("hello-reactor.wasm")))
        .await
        .err()
        .unwrap();
    assert_eq!(err.reason(), "InvalidImage");
    assert!(
        err.to_string()
            .contains("component exports neither wasi:cli/run nor wasi:http/incoming-handler"),
        "{err}"
    );
}

fn cached_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for engine_dir in std::fs::read_dir(dir.join("cache")).unwrap() {
        for f in std::fs::read_dir(engine_dir.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files
}

#[tokio::test]
async fn many_pods_of_one_image_compile_once_and_reuse_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let wasm = fixture("hello-p1.wasm");
    let specs: Vec<_> = (0..10)
        .map(|i| spec(dir.path(), &format!("c{i}"), &wasm))
        .collect();
    let starts = futures::future::join_all(specs.iter().cloned().map(|s| rt.start(s))).await;
    for c in starts {
        assert_eq!(within("pod", c.unwrap().wait()).await, Exit::code(0));
    }
    let files = cached_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().ends_with(".cwasm"));
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();

    // A new runtime (an agent restart) loads the compiled file instead of compiling again.
    drop(rt);
    let rt = runtime(dir.path());
    let c = rt.start(spec(dir.path(), "again", &wasm)).await.unwrap();
    assert_eq!(within("again", c.wait()).await, Exit::code(0));
    let files_after = cached_files(dir.path());
    assert_eq!(files_after, files);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        written
    );

    // A corrupt cache entry is replaced, not trusted. (Written while no runtime has it mapped:
    // rewriting a mapped cache file in place is what the cache's SAFETY contract excludes.)
    drop(c);
    drop(rt);
    std::fs::write(&files[0], b"garbage").unwrap();
    let rt = runtime(dir.path());
    let c = rt.start(spec(dir.path(), "fixed", &wasm)).await.unwrap();
    assert_eq!(within("fixed", c.wait()).await, Exit::code(0));
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 1000);
}

#[tokio::test]
async fn a_precompiled_image_starts_without_compiling_and_the_engine_waits_for_a_pod() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("hello-p1.wasm");

    // `ledge image import` precompiles with a runtime of its own, which never starts an engine.
    let importer = runtime(dir.path());
    assert_eq!(
        importer.precompile("hello-p1", &wasm).unwrap(),
        Prepared::Compiled
    );
    assert!(!importer.engine_started());
    let files = cached_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    assert_eq!(
        importer.precompile("hello-p1", &wasm).unwrap(),
        Prepared::AlreadyPrepared
    );

    // The agent's runtime: no engine until the first pod, which loads what the import wrote.
    let rt = runtime(dir.path());
    assert!(!rt.engine_started());
    assert_eq!(
        rt.prepare("hello-p1", &wasm).await.unwrap(),
        Prepared::AlreadyPrepared
    );
    assert!(!rt.engine_started());
    let c = rt.start(spec(dir.path(), "p1", &wasm)).await.unwrap();
    assert!(rt.engine_started());
    assert_eq!(within("p1", c.wait()).await, Exit::code(0));
    assert_eq!(cached_files(dir.path()), files);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        written
    );
}

#[tokio::test]
async fn precompiling_refuses_what_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let path = dir.path().join("broken.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0\x01\x05\x01\x60").unwrap();
    let err = rt.precompile("broken", &path).unwrap_err();
    assert_eq!(err.reason(), "InvalidImage");
    assert!(err.to_string().contains("does not compile"), "{err}");
    assert!(cached_files(dir.path()).is_empty());
    let missing = rt
        .precompile("gone", &dir.path().join("gone.wasm"))
        .unwrap_err();
    assert_eq!(missing.reason(), "ErrImageNeverPull");
}
