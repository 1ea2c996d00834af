//! Typed CRUD through `Api<ConfigMap>` and `Api<Deployment>`: create, get, list by label,
//! replace with optimistic concurrency, merge / strategic / server-side apply patches, delete.

use std::collections::BTreeMap;

use anyhow::ensure;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::expect_status;
use crate::server::with_server;

const NS: &str = "default";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn config_map(name: &str, app: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(&[("app", app)])),
            ..Default::default()
        },
        data: Some(labels(data)),
        ..Default::default()
    }
}

fn deployment(name: &str) -> Deployment {
    let selector = labels(&[("app", name)]);
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(selector.clone()),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(selector),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("registry.example/web:1.0".into()),
                        env: Some(vec![EnvVar {
                            name: "MODE".into(),
                            value: Some("prod".into()),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn container_names(d: &Deployment) -> Vec<String> {
    d.spec
        .template
        .spec
        .as_ref()
        .map(|p| p.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

fn replicas(d: &Deployment) -> Option<i32> {
    d.spec.replicas
}

#[tokio::test]
async fn configmap_crud_with_optimistic_concurrency() -> anyhow::Result<()> {
    with_server(|client| async move {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
        let pp = PostParams::default();

        // create
        let created = cms
            .create(&pp, &config_map("web-config", "web", &[("a", "1")]))
            .await?;
        ensure!(
            created.uid().is_some_and(|u| !u.is_empty()),
            "create returned no uid: {created:?}"
        );
        ensure!(
            created.resource_version().is_some_and(|rv| !rv.is_empty()),
            "create returned no resourceVersion: {created:?}"
        );
        ensure!(
            created.creation_timestamp().is_some(),
            "create returned no creationTimestamp"
        );
        cms.create(&pp, &config_map("db-config", "db", &[("b", "2")]))
            .await?;
        let message = expect_status(
            cms.create(&pp, &config_map("web-config", "web", &[])).await,
            409,
            "AlreadyExists",
        )?;
        ensure!(
            message.contains("web-config"),
            "AlreadyExists message names no object: {message}"
        );

        // get
        let got = cms.get("web-config").await?;
        ensure!(
            got.data == Some(labels(&[("a", "1")])),
            "get returned {:?}",
            got.data
        );
        ensure!(got.uid() == created.uid(), "get returned another object");

        // list with a label selector
        let listed = cms.list(&ListParams::default().labels("app=web")).await?;
        let names: Vec<String> = listed.iter().map(|c| c.name_any()).collect();
        ensure!(names == ["web-config"], "list app=web returned {names:?}");
        let listed = cms
            .list(&ListParams::default().labels("app in (web,db)"))
            .await?;
        let mut names: Vec<String> = listed.iter().map(|c| c.name_any()).collect();
        names.sort();
        ensure!(
            names == ["db-config", "web-config"],
            "list app in (web,db) returned {names:?}"
        );
        ensure!(
            listed
                .metadata
                .resource_version
                .is_some_and(|rv| !rv.is_empty()),
            "list has no resourceVersion"
        );

        // replace, then replace again from the now stale copy
        let mut fresh = got.clone();
        fresh.data = Some(labels(&[("a", "2")]));
        let replaced = cms.replace("web-config", &pp, &fresh).await?;
        ensure!(
            replaced.data == Some(labels(&[("a", "2")])),
            "replace returned {:?}",
            replaced.data
        );
        ensure!(
            replaced.resource_version() != got.resource_version(),
            "replace did not change resourceVersion ({:?})",
            replaced.resource_version()
        );
        let mut stale = got.clone();
        stale.data = Some(labels(&[("a", "stale")]));
        let message = expect_status(
            cms.replace("web-config", &pp, &stale).await,
            409,
            "Conflict",
        )?;
        ensure!(
            message.contains("the object has been modified"),
            "Conflict message differs from upstream's: {message}"
        );
        let after = cms.get("web-config").await?;
        ensure!(
            after.data == Some(labels(&[("a", "2")])),
            "a stale replace changed data: {:?}",
            after.data
        );

        // JSON merge patch: maps merge, null deletes a key
        let patch =
            json!({"metadata": {"labels": {"tier": "front"}}, "data": {"a": null, "c": "3"}});
        let patched = cms
            .patch("web-config", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        ensure!(
            patched.data == Some(labels(&[("c", "3")])),
            "merge patch gave data {:?}",
            patched.data
        );
        ensure!(
            patched.labels() == &labels(&[("app", "web"), ("tier", "front")]),
            "merge patch gave labels {:?}",
            patched.labels()
        );

        // a resourceVersion inside a patch is a precondition
        let stale_rv =
            json!({"metadata": {"resourceVersion": got.resource_version()}, "data": {"x": "1"}});
        expect_status(
            cms.patch(
                "web-config",
                &PatchParams::default(),
                &Patch::Merge(&stale_rv),
            )
            .await,
            409,
            "Conflict",
        )?;

        // delete: the object is gone for get, list and a second delete
        cms.delete("web-config", &DeleteParams::default()).await?;
        expect_status(cms.get("web-config").await, 404, "NotFound")?;
        let names: Vec<String> = cms
            .list(&ListParams::default().labels("app=web"))
            .await?
            .iter()
            .map(|c| c.name_any())
            .collect();
        ensure!(names.is_empty(), "deleted object still listed: {names:?}");
        expect_status(
            cms.delete("web-config", &DeleteParams::default()).await,
            404,
            "NotFound",
        )?;
        expect_status(cms.get("never-created").await, 404, "NotFound")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn deployment_patches_and_server_side_apply() -> anyhow::Result<()> {
    with_server(|client| async move {
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);

        let created = deploys.create(&PostParams::default(), &deployment("web")).await?;
        ensure!(container_names(&created) == ["app"], "created {:?}", container_names(&created));
        ensure!(created.metadata.generation == Some(1), "generation {:?}", created.metadata.generation);

        // Strategic merge patch: containers merge by name, so a sidecar is added next to `app`, and
        // env merges by name inside `app`.
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "image": "registry.example/proxy:2"},
            {"name": "app", "env": [{"name": "DEBUG", "value": "1"}]},
        ]}}}});
        let patched = deploys
            .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        let mut names = container_names(&patched);
        names.sort();
        ensure!(names == ["app", "sidecar"], "strategic patch gave containers {names:?}");
        let app = patched
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|p| p.containers.iter().find(|c| c.name == "app"))
            .cloned()
            .unwrap_or_default();
        ensure!(
            app.image.as_deref() == Some("registry.example/web:1.0"),
            "strategic patch lost the app image: {:?}",
            app.image
        );
        let mut env: Vec<String> = app.env.unwrap_or_default().into_iter().map(|e| e.name).collect();
        env.sort();
        ensure!(env == ["DEBUG", "MODE"], "strategic patch gave app env {env:?}");
        ensure!(
            patched.metadata.generation == Some(2),
            "a spec change must bump generation: {:?}",
            patched.metadata.generation
        );

        // JSON merge patch replaces lists wholesale.
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "only", "image": "registry.example/only:1"},
        ]}}}});
        let patched = deploys
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        ensure!(container_names(&patched) == ["only"], "merge patch gave {:?}", container_names(&patched));

        deploys.delete("web", &DeleteParams::default()).await?;
        expect_status(deploys.get("web").await, 404, "NotFound")?;

        // Server-side apply creates `api`; `kube-test` then owns every field it sent, spec.replicas
        // (1) among them ...
        let ssa = PatchParams::apply("kube-test");
        let applied = deploys.patch("api", &ssa, &Patch::Apply(deployment("api"))).await?;
        ensure!(replicas(&applied) == Some(1), "apply gave replicas {:?}", replicas(&applied));
        ensure!(container_names(&applied) == ["app"], "apply gave {:?}", container_names(&applied));
        ensure!(
            managers(&applied) == ["kube-test"],
            "managedFields after one apply: {:?}",
            managers(&applied)
        );

        // ... so another manager setting it to something else conflicts ...
        let other = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "api"},
            "spec": {"replicas": 5},
        });
        let message = expect_status(
            deploys
                .patch("api", &PatchParams::apply("other-manager"), &Patch::Apply(&other))
                .await,
            409,
            "Conflict",
        )?;
        ensure!(
            message.contains("kube-test") && message.contains(".spec.replicas"),
            "an apply conflict must name the owner and the field, like upstream's \
             `Apply failed with 1 conflict: conflict with \"kube-test\" ...: .spec.replicas`: {message}"
        );
        let unchanged = deploys.get("api").await?;
        ensure!(replicas(&unchanged) == Some(1), "a conflicting apply changed replicas");

        // ... unless it forces, taking the field over.
        let forced = deploys
            .patch("api", &PatchParams::apply("other-manager").force(), &Patch::Apply(&other))
            .await?;
        ensure!(replicas(&forced) == Some(5), "forced apply gave replicas {:?}", replicas(&forced));
        ensure!(
            managers(&forced).contains(&"other-manager".to_string()),
            "managedFields lack the forcing manager: {:?}",
            managers(&forced)
        );
        ensure!(
            container_names(&forced) == ["app"],
            "a partial apply by another manager removed kube-test's containers: {:?}",
            container_names(&forced)
        );
        // kube-test lost spec.replicas: re-applying its whole manifest now conflicts on that field.
        let message = expect_status(
            deploys.patch("api", &ssa, &Patch::Apply(deployment("api"))).await,
            409,
            "Conflict",
        )?;
        ensure!(message.contains("other-manager"), "conflict names no owner: {message}");

        deploys.delete("api", &DeleteParams::default()).await?;
        expect_status(deploys.get("api").await, 404, "NotFound")?;
        Ok(())
    })
    .await
}

fn managers(d: &Deployment) -> Vec<String> {
    d.managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect()
}
