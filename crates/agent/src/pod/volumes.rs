//! Pod volumes made real on the host, under `<data dir>/pods/<uid>/volumes/<plugin>/<name>`
//! as kubelet lays them out: `emptyDir` (a directory), `configMap` and `secret` (one file per
//! key, `items` and `defaultMode` honoured), `downwardAPI`, `projected` (ConfigMap, Secret and
//! downward API sources) and `hostPath` (the host's own path, with its `type` checked).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use ledge_api::Pointer as _;
use serde_json::Value;

use super::env::{self, NodeFacts};
use super::refs::{RefKind, Refs};
use super::spec::{Container, PodSpec, Volume};

/// Materialise every volume of the pod; returns volume name → host path.
///
/// # Errors
/// The upstream-style reason a volume cannot be set up (the pod then waits, with a
/// `FailedMount` event).
pub fn set_up(
    pod_dir: &Path,
    pod: &Value,
    spec: &PodSpec,
    refs: &Refs,
    node: &NodeFacts,
) -> Result<HashMap<String, PathBuf>, String> {
    let mut out = HashMap::new();
    for v in &spec.volumes {
        let path = set_up_one(pod_dir, pod, v, refs, node)
            .map_err(|e| format!("MountVolume.SetUp failed for volume \"{}\" : {e}", v.name))?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

fn set_up_one(
    pod_dir: &Path,
    pod: &Value,
    v: &Volume,
    refs: &Refs,
    node: &NodeFacts,
) -> Result<PathBuf, String> {
    let namespace = pod
        .at("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let dir = |plugin: &str| pod_dir.join("volumes").join(plugin).join(&v.name);
    let src = &v.source;
    if src.contains_key("emptyDir") {
        let d = dir("kubernetes.io~empty-dir");
        fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        return Ok(d);
    }
    if let Some(hp) = src.get("hostPath") {
        return host_path(hp);
    }
    let mode_of = |s: &Value| {
        s.get("defaultMode")
            .and_then(Value::as_u64)
            .map(|m| m as u32)
    };
    if let Some(cm) = src.get("configMap") {
        let mut files = Vec::new();
        add_object(&mut files, refs, RefKind::ConfigMap, cm, namespace, "name")?;
        return write_dir(
            &dir("kubernetes.io~configmap"),
            &files,
            mode_of(cm).unwrap_or(0o644),
        );
    }
    if let Some(s) = src.get("secret") {
        let mut files = Vec::new();
        add_object(
            &mut files,
            refs,
            RefKind::Secret,
            s,
            namespace,
            "secretName",
        )?;
        return write_dir(
            &dir("kubernetes.io~secret"),
            &files,
            mode_of(s).unwrap_or(0o644),
        );
    }
    if let Some(d) = src.get("downwardAPI") {
        let mut files = Vec::new();
        add_downward(&mut files, pod, d, node)?;
        return write_dir(
            &dir("kubernetes.io~downward-api"),
            &files,
            mode_of(d).unwrap_or(0o644),
        );
    }
    if let Some(p) = src.get("projected") {
        let mut files = Vec::new();
        for s in p
            .get("sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(cm) = s.get("configMap") {
                add_object(&mut files, refs, RefKind::ConfigMap, cm, namespace, "name")?;
            } else if let Some(sec) = s.get("secret") {
                add_object(&mut files, refs, RefKind::Secret, sec, namespace, "name")?;
            } else if let Some(d) = s.get("downwardAPI") {
                add_downward(&mut files, pod, d, node)?;
            } else if s.get("serviceAccountToken").is_some() {
                // No TokenRequest API yet: the token file is left out rather than faked.
                tracing::debug!(volume = %v.name, "serviceAccountToken projection is not supported yet");
            }
        }
        return write_dir(
            &dir("kubernetes.io~projected"),
            &files,
            mode_of(p).unwrap_or(0o644),
        );
    }
    let kind = src.keys().next().map(String::as_str).unwrap_or("(none)");
    Err(format!(
        "volume type {kind} is not supported on ledge nodes"
    ))
}

type File = (String, Vec<u8>, Option<u32>);

fn add_object(
    files: &mut Vec<File>,
    refs: &Refs,
    kind: RefKind,
    src: &Value,
    namespace: &str,
    name_field: &str,
) -> Result<(), String> {
    let name = src.get(name_field).and_then(Value::as_str).unwrap_or("");
    let optional = src
        .get("optional")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let data = refs.data(kind, name, optional)?;
    match src.get("items").and_then(Value::as_array) {
        Some(items) => {
            for item in items {
                let key = item.get("key").and_then(Value::as_str).unwrap_or("");
                let path = item.get("path").and_then(Value::as_str).unwrap_or(key);
                let mode = item.get("mode").and_then(Value::as_u64).map(|m| m as u32);
                match data.iter().find(|(k, _)| k == key) {
                    Some((_, bytes)) => files.push((path.to_string(), bytes.clone(), mode)),
                    None if optional => {}
                    None => {
                        let what = if kind == RefKind::ConfigMap {
                            "configmap"
                        } else {
                            "secret"
                        };
                        return Err(format!(
                            "{what} references non-existent {what} key: {key} ({namespace}/{name})"
                        ));
                    }
                }
            }
        }
        None => files.extend(data.into_iter().map(|(k, v)| (k, v, None))),
    }
    Ok(())
}

fn add_downward(
    files: &mut Vec<File>,
    pod: &Value,
    src: &Value,
    node: &NodeFacts,
) -> Result<(), String> {
    for item in src
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path = item.get("path").and_then(Value::as_str).unwrap_or("");
        let mode = item.get("mode").and_then(Value::as_u64).map(|m| m as u32);
        let value = if let Some(f) = item.get("fieldRef") {
            env::field(
                pod,
                f.get("fieldPath").and_then(Value::as_str).unwrap_or(""),
                node,
            )?
        } else if let Some(r) = item.get("resourceFieldRef") {
            let c = r.get("containerName").and_then(Value::as_str).unwrap_or("");
            let res = r.get("resource").and_then(Value::as_str).unwrap_or("");
            let div = r.get("divisor").and_then(Value::as_str).unwrap_or("1");
            env::resource(pod, c, res, div, node)?
        } else {
            continue;
        };
        files.push((path.to_string(), value.into_bytes(), mode));
    }
    Ok(())
}

/// Write `files` into a fresh `dir` (old contents replaced), refusing paths that leave it.
fn write_dir(dir: &Path, files: &[File], default_mode: u32) -> Result<PathBuf, String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(err)?;
    }
    fs::create_dir_all(dir).map_err(err)?;
    for (path, bytes, mode) in files {
        let rel = Path::new(path);
        if path.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!(
                "invalid path {path:?}: must be relative and must not contain '..'"
            ));
        }
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(err)?;
        }
        fs::write(&target, bytes).map_err(err)?;
        fs::set_permissions(
            &target,
            fs::Permissions::from_mode(mode.unwrap_or(default_mode) & 0o777),
        )
        .map_err(err)?;
    }
    Ok(dir.to_path_buf())
}

fn host_path(hp: &Value) -> Result<PathBuf, String> {
    let path = PathBuf::from(hp.get("path").and_then(Value::as_str).unwrap_or(""));
    let kind = hp.get("type").and_then(Value::as_str).unwrap_or("");
    let meta = fs::metadata(&path);
    let fail = |what: &str| {
        Err(format!(
            "hostPath type check failed: {} is not a {what}",
            path.display()
        ))
    };
    match kind {
        "DirectoryOrCreate" => {
            if meta.is_err() {
                fs::create_dir_all(&path).map_err(|e| e.to_string())?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())?;
            } else if !path.is_dir() {
                return fail("directory");
            }
        }
        "Directory" if !path.is_dir() => return fail("directory"),
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                fs::write(&path, b"").map_err(|e| e.to_string())?;
            } else if !path.is_file() {
                return fail("file");
            }
        }
        "File" if !path.is_file() => return fail("file"),
        "Socket" | "CharDevice" | "BlockDevice" if meta.is_err() => {
            return Err(format!(
                "hostPath type check failed: {} does not exist",
                path.display()
            ));
        }
        _ => {}
    }
    Ok(path)
}

/// The mounts of one container: each `volumeMount` resolved to its host path (with `subPath`).
///
/// # Errors
/// A mount of a volume the pod does not have, or a `subPath` that leaves the volume.
pub fn mounts(
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Result<Vec<ledge_runtime::Mount>, String> {
    container
        .volume_mounts
        .iter()
        .map(|m| {
            let base = volumes
                .get(&m.name)
                .ok_or_else(|| format!("volume {:?} is not defined in the pod", m.name))?;
            let host_path = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    let rel = Path::new(sub);
                    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                        return Err(format!(
                            "subPath {sub:?} must be relative and must not contain '..'"
                        ));
                    }
                    let p = base.join(rel);
                    if !p.exists() {
                        fs::create_dir_all(&p).map_err(|e| e.to_string())?;
                    }
                    p
                }
                None => base.clone(),
            };
            Ok(ledge_runtime::Mount {
                host_path,
                container_path: m.mount_path.clone(),
                read_only: m.read_only.unwrap_or(false),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sets_up_every_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host/data");
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i",
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true},
                                 {"name": "scratch", "mountPath": "/tmp", "subPath": "x"}]}],
              "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "a", "path": "sub/a.txt"}]}},
                {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "h", "hostPath": {"path": host.to_str().unwrap(), "type": "DirectoryOrCreate"}}
            ]}
        });
        let spec = PodSpec::of(&pod).unwrap();
        let refs = Refs::from_objects(
            vec![json!({"metadata": {"name": "cm"}, "data": {"a": "1", "b": "2"}})],
            vec![json!({"metadata": {"name": "s"}, "data": {"pw": "aHVudGVyMg=="}})],
        );
        let vols = set_up(tmp.path(), &pod, &spec, &refs, &NodeFacts::default()).unwrap();
        assert!(vols["scratch"].is_dir());
        assert_eq!(
            fs::read_to_string(vols["cfg"].join("sub/a.txt")).unwrap(),
            "1"
        );
        assert!(!vols["cfg"].join("b").exists());
        let pw = vols["sec"].join("pw");
        assert_eq!(fs::read_to_string(&pw).unwrap(), "hunter2");
        assert_eq!(
            fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert_eq!(
            fs::read_to_string(vols["info"].join("labels")).unwrap(),
            "a=\"b\""
        );
        assert!(host.is_dir());
        let mounts = mounts(&spec.containers[0], &vols).unwrap();
        assert!(mounts[0].read_only);
        assert!(mounts[1].host_path.ends_with("x"));
    }

    #[test]
    fn bad_volumes_say_which() {
        let tmp = tempfile::tempdir().unwrap();
        let pod = json!({"metadata": {"namespace": "ns"}, "spec": {"volumes": [
            {"name": "cfg", "configMap": {"name": "missing"}}]}});
        let spec = PodSpec::of(&pod).unwrap();
        let err = set_up(
            tmp.path(),
            &pod,
            &spec,
            &Refs::default(),
            &NodeFacts::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"missing\" not found"
        );
        let pod = json!({"spec": {"volumes": [{"name": "x", "nfs": {"server": "a"}}]}});
        let spec = PodSpec::of(&pod).unwrap();
        let err = set_up(
            tmp.path(),
            &pod,
            &spec,
            &Refs::default(),
            &NodeFacts::default(),
        )
        .unwrap_err();
        assert!(err.contains("volume type nfs is not supported"), "{err}");
    }
}
