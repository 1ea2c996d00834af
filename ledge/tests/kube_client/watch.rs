//! `kube::runtime::watcher` on ConfigMaps with a label selector: the initial list, then changes
//! made after the watcher started, objects entering and leaving the selector, and the two
//! initial-list strategies (list-then-watch with bookmarks allowed, and streaming lists, whose end
//! is marked by a bookmark).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, ensure};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::json;

use crate::server::with_server;
use crate::{describe, next_event};

const NS: &str = "default";
const SELECTOR: &str = "watched=yes";

fn config_map(name: &str, watched: bool, value: &str) -> ConfigMap {
    let mut labels = BTreeMap::new();
    if watched {
        labels.insert("watched".to_string(), "yes".to_string());
    }
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("value".to_string(), value.to_string())])),
        ..Default::default()
    }
}

fn value(cm: &ConfigMap) -> Option<&str> {
    cm.data.as_ref()?.get("value").map(String::as_str)
}

type Events =
    std::pin::Pin<Box<dyn Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Send>>;

/// Read the initial list: `Init`, one `InitApply` per matching object, `InitDone`. Returns the
/// names listed.
async fn initial_list(events: &mut Events) -> anyhow::Result<Vec<String>> {
    let first = next_event(events, "Init").await?;
    ensure!(
        matches!(first, Event::Init),
        "first event {} is not Init",
        describe(&first)
    );
    let mut names = Vec::new();
    loop {
        match next_event(events, "InitApply or InitDone").await? {
            Event::InitApply(cm) => names.push(cm.name_any()),
            Event::InitDone => break,
            other => bail!("{} during the initial list", describe(&other)),
        }
    }
    names.sort();
    Ok(names)
}

/// The next event must be `Apply` of `name`; returns the object.
async fn expect_apply(events: &mut Events, name: &str) -> anyhow::Result<ConfigMap> {
    match next_event(events, &format!("Apply({name})")).await? {
        Event::Apply(cm) if cm.name_any() == name => Ok(cm),
        other => bail!("expected Apply({name}), got {}", describe(&other)),
    }
}

/// The next event must be `Delete` of `name`; returns the object.
async fn expect_delete(events: &mut Events, name: &str) -> anyhow::Result<ConfigMap> {
    match next_event(events, &format!("Delete({name})")).await? {
        Event::Delete(cm) if cm.name_any() == name => Ok(cm),
        other => bail!("expected Delete({name}), got {}", describe(&other)),
    }
}

#[tokio::test]
async fn watcher_sees_changes_after_the_initial_list() -> anyhow::Result<()> {
    with_server(|client| async move {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
        let pp = PostParams::default();
        cms.create(&pp, &config_map("before", true, "0")).await?;
        cms.create(&pp, &config_map("before-unwatched", false, "0"))
            .await?;

        // kube's default: list, then watch from the list's resourceVersion with
        // allowWatchBookmarks=true. The server ends each watch after 1 s (timeoutSeconds=1), so the
        // watcher also resumes from the last resourceVersion it saw, several times.
        let config = watcher::Config::default().labels(SELECTOR).timeout(1);
        ensure!(
            config.bookmarks,
            "kube's watcher asks for bookmarks by default"
        );
        let mut events: Events = watcher(cms.clone(), config).boxed();
        let listed = initial_list(&mut events).await?;
        ensure!(
            listed == ["before"],
            "initial list with {SELECTOR}: {listed:?}"
        );

        // An object outside the selector is never reported; events arrive in write order, so the
        // next event is about `created`.
        cms.create(&pp, &config_map("unwatched", false, "1"))
            .await?;
        cms.create(&pp, &config_map("created", true, "1")).await?;
        let cm = expect_apply(&mut events, "created").await?;
        ensure!(
            value(&cm) == Some("1"),
            "Apply(created) carries {:?}",
            cm.data
        );

        // Outlive at least one server-side watch timeout, so the next change reaches the watcher
        // through a watch resumed from its last resourceVersion (lost or repeated events show here).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let patch = json!({"data": {"value": "2"}});
        let patched = cms
            .patch("created", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let cm = expect_apply(&mut events, "created").await?;
        ensure!(
            value(&cm) == Some("2"),
            "Apply(created) after patch carries {:?}",
            cm.data
        );
        // The watcher resumes from the resourceVersion of the last event it saw.
        ensure!(
            cm.resource_version() == patched.resource_version(),
            "the watch event has resourceVersion {:?}, the patch returned {:?}",
            cm.resource_version(),
            patched.resource_version()
        );

        // Entering the selector is an Apply; leaving it is a Delete (upstream sends ADDED/DELETED
        // for a watch whose label selector starts/stops matching).
        let enter = json!({"metadata": {"labels": {"watched": "yes"}}});
        cms.patch("unwatched", &PatchParams::default(), &Patch::Merge(&enter))
            .await?;
        expect_apply(&mut events, "unwatched").await?;
        let leave = json!({"metadata": {"labels": {"watched": "no"}}});
        let left = cms
            .patch("before", &PatchParams::default(), &Patch::Merge(&leave))
            .await?;
        let cm = expect_delete(&mut events, "before").await?;
        // Upstream sends the last state that matched, stamped with the change's resourceVersion
        // (apiserver cacher `convertToWatchEvent`).
        ensure!(
            cm.resource_version() == left.resource_version(),
            "Delete(before) has resourceVersion {:?}, the patch that moved it out returned {:?}",
            cm.resource_version(),
            left.resource_version()
        );

        cms.delete("created", &DeleteParams::default()).await?;
        let cm = expect_delete(&mut events, "created").await?;
        ensure!(
            value(&cm) == Some("2"),
            "Delete(created) carries {:?}",
            cm.data
        );

        // A second watcher started now lists exactly what matches now.
        let mut again: Events =
            watcher(cms.clone(), watcher::Config::default().labels(SELECTOR)).boxed();
        let listed = initial_list(&mut again).await?;
        ensure!(
            listed == ["unwatched"],
            "relist with {SELECTOR}: {listed:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn streaming_list_watcher_ends_its_initial_list_on_the_bookmark() -> anyhow::Result<()> {
    with_server(|client| async move {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
        let pp = PostParams::default();
        cms.create(&pp, &config_map("one", true, "1")).await?;
        cms.create(&pp, &config_map("two", true, "2")).await?;
        cms.create(&pp, &config_map("other", false, "3")).await?;

        // sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true: the
        // watcher reports InitDone only when the server's BOOKMARK annotated
        // `k8s.io/initial-events-end: "true"` arrives.
        let config = watcher::Config::default()
            .labels(SELECTOR)
            .streaming_lists();
        let mut events: Events = watcher(cms.clone(), config).boxed();
        let listed = initial_list(&mut events).await?;
        ensure!(
            listed == ["one", "two"],
            "streamed initial list with {SELECTOR}: {listed:?}"
        );

        // The same watch goes on with changes after the bookmark.
        cms.create(&pp, &config_map("three", true, "3")).await?;
        expect_apply(&mut events, "three").await?;
        cms.delete("one", &DeleteParams::default()).await?;
        expect_delete(&mut events, "one").await?;
        Ok(())
    })
    .await
}
