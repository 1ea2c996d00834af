//! `kube::discovery::Discovery`, legacy (`/api`, `/apis`, one request per group version) and
//! aggregated (`/api` and `/apis` as APIGroupDiscoveryList): both find the built-in
//! `apps/v1 Deployment` and a custom kind once its CRD is established, and the found
//! `ApiResource` drives a dynamic client.

use anyhow::{Context, ensure};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};

use crate::crd::{Widget, WidgetSpec, install_widget_crd};
use crate::server::with_server;

/// What discovery says about `group/version kind`, or an error naming what was found instead.
fn resolve(
    discovery: &Discovery,
    group: &str,
    version: &str,
    kind: &str,
) -> anyhow::Result<(ApiResource, ApiCapabilities)> {
    discovery
        .resolve_gvk(&GroupVersionKind::gvk(group, version, kind))
        .with_context(|| {
            let kinds: Vec<String> = discovery
                .get(group)
                .map(|g| {
                    g.recommended_resources()
                        .into_iter()
                        .map(|(ar, _)| format!("{} {}", ar.api_version, ar.kind))
                        .collect()
                })
                .unwrap_or_default();
            format!("discovery has no {group}/{version} {kind}; group {group:?} has {kinds:?}")
        })
}

/// The checks both discovery modes must pass.
fn check(discovery: &Discovery, mode: &str) -> anyhow::Result<ApiResource> {
    let (deploy, caps) = resolve(discovery, "apps", "v1", "Deployment")
        .with_context(|| format!("{mode} discovery"))?;
    ensure!(
        deploy.plural == "deployments",
        "{mode}: Deployment plural {}",
        deploy.plural
    );
    ensure!(
        caps.scope == Scope::Namespaced,
        "{mode}: Deployment is not namespaced"
    );
    for verb in [
        verbs::LIST,
        verbs::WATCH,
        verbs::CREATE,
        verbs::PATCH,
        verbs::DELETE,
    ] {
        ensure!(
            caps.supports_operation(verb),
            "{mode}: Deployment lacks verb {verb}"
        );
    }
    let subresources: Vec<&str> = caps
        .subresources
        .iter()
        .map(|(ar, _)| ar.plural.as_str())
        .collect();
    ensure!(
        subresources.contains(&"scale") && subresources.contains(&"status"),
        "{mode}: Deployment subresources {subresources:?}"
    );
    ensure!(
        discovery.get("apps").and_then(|g| g.preferred_version()) == Some("v1"),
        "{mode}: apps has no preferred version v1"
    );
    let (cm, caps) =
        resolve(discovery, "", "v1", "ConfigMap").with_context(|| format!("{mode} discovery"))?;
    ensure!(
        cm.plural == "configmaps" && caps.scope == Scope::Namespaced,
        "{mode}: ConfigMap {cm:?}"
    );

    let (widget, caps) = resolve(discovery, "example.com", "v1", "Widget")
        .with_context(|| format!("{mode} discovery"))?;
    ensure!(
        widget.plural == "widgets",
        "{mode}: Widget plural {}",
        widget.plural
    );
    ensure!(
        caps.scope == Scope::Namespaced,
        "{mode}: Widget is not namespaced"
    );
    ensure!(
        caps.supports_operation(verbs::WATCH),
        "{mode}: Widget lacks watch"
    );
    let subresources: Vec<&str> = caps
        .subresources
        .iter()
        .map(|(ar, _)| ar.plural.as_str())
        .collect();
    ensure!(
        subresources.contains(&"status"),
        "{mode}: Widget subresources {subresources:?}"
    );
    Ok(widget)
}

#[tokio::test]
async fn discovery_finds_builtin_and_custom_kinds() -> anyhow::Result<()> {
    with_server(|client| async move {
        install_widget_crd(&client).await?;

        let legacy = Discovery::new(client.clone())
            .run()
            .await
            .context("Discovery::run")?;
        let widget = check(&legacy, "legacy")?;
        let aggregated = Discovery::new(client.clone())
            .run_aggregated()
            .await
            .context("Discovery::run_aggregated")?;
        check(&aggregated, "aggregated")?;

        // What discovery found is enough to use the kind without compiled-in types.
        let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widget);
        let typed = Widget::new(
            "found",
            WidgetSpec {
                size: 1,
                color: "red".into(),
            },
        );
        let object: DynamicObject = serde_json::from_value(serde_json::to_value(&typed)?)?;
        dynamic.create(&PostParams::default(), &object).await?;
        let names: Vec<String> = dynamic
            .list(&Default::default())
            .await?
            .iter()
            .map(|o| o.name_any())
            .collect();
        ensure!(names == ["found"], "dynamic list of widgets: {names:?}");
        Ok(())
    })
    .await
}
