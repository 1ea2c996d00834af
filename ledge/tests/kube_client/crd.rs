//! A custom resource from `#[derive(CustomResource)]`: the CRD installed by server-side apply and
//! waited on until `Established`, custom objects created, their `/status` patched, watched, and
//! removed together with the CRD; its printer column as `kubectl get` shows it.

use std::collections::BTreeSet;

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::server::with_server;
use crate::{describe, eventually, expect_status, next_event};

const NS: &str = "default";

/// The spec of a `Widget` (example.com/v1), a namespaced kind with a status subresource and a
/// `Size` printer column.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wg",
    printcolumn(name = "Size", type_ = "integer", json_path = ".spec.size")
)]
pub struct WidgetSpec {
    pub size: i32,
    pub color: String,
}

/// What a controller would report about a `Widget`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    pub ready: bool,
    pub observed_size: i32,
}

/// The CRD's name, `<plural>.<group>`.
pub const CRD_NAME: &str = "widgets.example.com";

/// Install the Widget CRD by server-side apply and wait until it is `Established`.
pub async fn install_widget_crd(client: &Client) -> anyhow::Result<CustomResourceDefinition> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Widget::crd();
    ensure!(
        crd.name_any() == CRD_NAME,
        "kube derives the CRD name {}",
        crd.name_any()
    );
    crds.patch(
        CRD_NAME,
        &PatchParams::apply("kube-test"),
        &Patch::Apply(&crd),
    )
    .await
    .context("server-side apply of the Widget CRD")?;
    eventually("the Widget CRD to be Established", || async {
        let crd = crds.get(CRD_NAME).await?;
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        Ok(established.then_some(crd))
    })
    .await
}

fn widget(name: &str, size: i32) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            size,
            color: "blue".into(),
        },
    )
}

#[tokio::test]
async fn custom_resource_lifecycle() -> anyhow::Result<()> {
    with_server(|client| async move {
        let crd = install_widget_crd(&client).await?;
        let names = crd.status.as_ref().and_then(|s| s.accepted_names.as_ref());
        ensure!(
            names.is_some_and(|n| n.kind == "Widget" && n.plural == "widgets"),
            "acceptedNames of the established CRD: {names:?}"
        );

        let widgets: Api<Widget> = Api::namespaced(client.clone(), NS);
        let pp = PostParams::default();
        let w1 = widgets.create(&pp, &widget("w1", 3)).await?;
        ensure!(
            w1.spec == widget("w1", 3).spec,
            "created spec {:?}",
            w1.spec
        );
        ensure!(
            w1.status.is_none(),
            "a new Widget has status {:?}",
            w1.status
        );
        widgets.create(&pp, &widget("w2", 5)).await?;
        expect_status(
            widgets.create(&pp, &widget("w1", 9)).await,
            409,
            "AlreadyExists",
        )?;

        // The status subresource: /status changes only status ...
        let status_patch = json!({
            "spec": {"size": 100},
            "status": {"ready": true, "observedSize": 3},
        });
        let patched = widgets
            .patch_status("w1", &PatchParams::default(), &Patch::Merge(&status_patch))
            .await?;
        let want = WidgetStatus {
            ready: true,
            observed_size: 3,
        };
        ensure!(
            patched.status.as_ref() == Some(&want),
            "patch_status gave status {:?}",
            patched.status
        );
        ensure!(
            patched.spec.size == 3,
            "a /status patch changed spec.size to {}",
            patched.spec.size
        );
        ensure!(
            widgets.get_status("w1").await?.status == Some(want.clone()),
            "get_status does not return the patched status"
        );
        // ... and the main resource ignores status (upstream drops it for kinds with /status).
        let main_patch =
            json!({"spec": {"size": 4}, "status": {"ready": false, "observedSize": 0}});
        let patched = widgets
            .patch("w1", &PatchParams::default(), &Patch::Merge(&main_patch))
            .await?;
        ensure!(
            patched.spec.size == 4,
            "main patch gave size {}",
            patched.spec.size
        );
        ensure!(
            patched.status.as_ref() == Some(&want),
            "a main-resource patch changed status to {:?}",
            patched.status
        );
        ensure!(
            patched.metadata.generation == Some(2),
            "a spec change must bump generation of a CRD with /status: {:?}",
            patched.metadata.generation
        );

        // Watch the custom objects.
        let mut events = watcher(widgets.clone(), watcher::Config::default()).boxed();
        let first = next_event(&mut events, "Init").await?;
        ensure!(
            matches!(first, Event::Init),
            "first event {}",
            describe(&first)
        );
        let mut listed = BTreeSet::new();
        loop {
            match next_event(&mut events, "InitApply or InitDone").await? {
                Event::InitApply(w) => {
                    listed.insert(w.name_any());
                }
                Event::InitDone => break,
                other => bail!("{} during the initial list", describe(&other)),
            }
        }
        ensure!(
            listed == BTreeSet::from(["w1".into(), "w2".into()]),
            "initial list {listed:?}"
        );
        widgets.create(&pp, &widget("w3", 7)).await?;
        match next_event(&mut events, "Apply(w3)").await? {
            Event::Apply(w) if w.name_any() == "w3" && w.spec.size == 7 => {}
            other => bail!("expected Apply(w3), got {}", describe(&other)),
        }
        widgets
            .patch_status(
                "w3",
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"ready": true, "observedSize": 7}})),
            )
            .await?;
        match next_event(&mut events, "Apply(w3) with status").await? {
            Event::Apply(w)
                if w.name_any() == "w3" && w.status.as_ref().is_some_and(|s| s.ready) => {}
            other => bail!(
                "expected Apply(w3) with status ready, got {}",
                describe(&other)
            ),
        }

        // Deleting the CRD deletes its objects (watchers see them go) and then the CRD itself.
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.delete(CRD_NAME, &DeleteParams::default()).await?;
        let mut deleted = BTreeSet::new();
        while deleted.len() < 3 {
            match next_event(&mut events, "Delete of w1, w2, w3").await? {
                Event::Delete(w) => {
                    deleted.insert(w.name_any());
                }
                other => bail!(
                    "expected the Widgets' Delete events, got {}",
                    describe(&other)
                ),
            }
        }
        ensure!(
            deleted == BTreeSet::from(["w1".into(), "w2".into(), "w3".into()]),
            "Delete events for {deleted:?}"
        );
        drop(events);
        eventually("the Widget CRD to be gone", || async {
            match crds.get(CRD_NAME).await {
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(Some(())),
                Err(e) => Err(e.into()),
                Ok(_) => Ok(None),
            }
        })
        .await?;
        expect_status(widgets.list(&ListParams::default()).await, 404, "NotFound")?;

        // Installing the CRD again does not bring the old objects back.
        install_widget_crd(&client).await?;
        let names: Vec<String> = widgets
            .list(&ListParams::default())
            .await?
            .iter()
            .map(|w| w.name_any())
            .collect();
        ensure!(
            names.is_empty(),
            "Widgets survived their CRD's deletion: {names:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn printer_column_is_what_kubectl_get_shows() -> anyhow::Result<()> {
    with_server(|client| async move {
        install_widget_crd(&client).await?;
        let widgets: Api<Widget> = Api::namespaced(client.clone(), NS);
        widgets
            .create(&PostParams::default(), &widget("w1", 4))
            .await?;

        let table = printed_table(&client).await?;
        let columns: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .map(|cols| cols.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        // Upstream serves Name, then exactly the CRD's additionalPrinterColumns; Age is only
        // the default for a CRD that declares none (apiextensions-apiserver
        // pkg/apiserver/columns.go `serveDefaultColumnsIfEmpty`). So `kubectl get widgets`
        // shows NAME SIZE.
        ensure!(
            columns == ["Name", "Size"],
            "Table columns {columns:?}, want [\"Name\", \"Size\"]"
        );
        let rows = table["rows"].as_array().cloned().unwrap_or_default();
        ensure!(rows.len() == 1, "Table has {} rows, want 1", rows.len());
        let cells = &rows[0]["cells"];
        ensure!(
            cells == &json!(["w1", 4]),
            "Table row cells {cells}, want [\"w1\", 4]"
        );
        ensure!(
            rows[0]["object"]["metadata"]["name"] == "w1",
            "Table row object {}",
            rows[0]["object"]
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn custom_resources_stay_served_while_their_crd_changes() -> anyhow::Result<()> {
    with_server(|client| async move {
        install_widget_crd(&client).await?;
        let widgets: Api<Widget> = Api::namespaced(client.clone(), NS);
        widgets
            .create(&PostParams::default(), &widget("w1", 1))
            .await?;
        // Every change to the CRD (here its labels) makes the server re-read the served
        // versions; a reader in between must never find the resource missing.
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let writer = async {
            for i in 0..40 {
                let patch = json!({"metadata": {"labels": {"round": i.to_string()}}});
                crds.patch(CRD_NAME, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            anyhow::Ok(())
        };
        let reader = async {
            let mut reads = 0;
            loop {
                widgets
                    .get("w1")
                    .await
                    .with_context(|| format!("GET widgets/w1 after {reads} good reads"))?;
                reads += 1;
                tokio::task::yield_now().await;
                if reads >= 400 {
                    return anyhow::Ok(());
                }
            }
        };
        tokio::try_join!(writer, reader)?;
        Ok(())
    })
    .await
}

/// `kubectl get widgets` as a Table: the server-side printing kubectl asks for.
async fn printed_table(client: &Client) -> anyhow::Result<serde_json::Value> {
    let request = http::Request::get(format!("/apis/example.com/v1/namespaces/{NS}/widgets"))
        .header(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())?;
    let table: serde_json::Value = client.request(request).await?;
    if table["kind"] != "Table" {
        bail!("asked for a Table, got kind {}", table["kind"]);
    }
    Ok(table)
}
