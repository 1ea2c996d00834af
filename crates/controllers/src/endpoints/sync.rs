//! One Service's endpoints written (upstream `syncService` of both controllers): the
//! EndpointSlices matched to what [`desired::slices`] says — unchanged slices kept, others
//! rewritten in place, missing ones created, surplus ones deleted — then the legacy Endpoints.

use std::sync::Arc;

use ledge_api::ApiError;
use ledge_api::Pointer as _;
use ledge_controller::kinds::{ENDPOINT_SLICE, ENDPOINTS, SERVICE};
use ledge_controller::{Action, ObjectKey, is_namespace_terminating, owner};
use serde_json::{Value, json};

use super::EndpointsController;
use super::desired::{self, SliceContent};
use crate::meta;

impl EndpointsController {
    /// Reconcile one Service's endpoints.
    ///
    /// # Errors
    /// A failed API call; the harness retries with back-off.
    pub(super) async fn reconcile(&self, key: ObjectKey) -> Result<Action, ApiError> {
        let ns = key.namespace.as_deref();
        let Some(service) = self.services.store().get(&key) else {
            // Slices are owned by the Service and collected with it; the legacy Endpoints are
            // not, so they go here (upstream deletes them on the Service's deletion too).
            self.expectations.forget(&key);
            if self.endpoints.store().get(&key).is_some() {
                match self.client.delete(&ENDPOINTS, ns, &key.name, None).await {
                    Ok(()) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(Action::AwaitChange);
        };
        if desired::selector(&service).is_none() || meta::is_deleting(&service) {
            return Ok(Action::AwaitChange);
        }
        let pods = self.as_served(self.pods.store().list(ns));
        if self.expectations.satisfied(&key, &self.slices) {
            self.sync_slices(&key, &service, &pods).await?;
        }
        self.sync_endpoints(&key, &service, &pods).await?;
        Ok(Action::AwaitChange)
    }

    /// The pods as Services see them: a pod on a node that is not Ready counts as not ready
    /// (what upstream gets by writing every such pod's status; ledge leaves the pods alone).
    fn as_served(&self, pods: Vec<Arc<Value>>) -> Vec<Arc<Value>> {
        pods.into_iter()
            .map(|p| {
                let node = meta::str_at(&p, "/spec/nodeName");
                if node.is_empty() {
                    return p;
                }
                let node_ready = self
                    .nodes
                    .store()
                    .get(&ObjectKey::new(None, node))
                    .is_none_or(|n| crate::nodelifecycle::health::ready_status(&n) == "True");
                match crate::nodelifecycle::health::not_ready_status(&p, "") {
                    Some(status) if !node_ready => {
                        let mut copy = (*p).clone();
                        copy["status"] = status;
                        Arc::new(copy)
                    }
                    _ => p,
                }
            })
            .collect()
    }

    async fn sync_slices(
        &self,
        key: &ObjectKey,
        service: &Value,
        pods: &[Arc<Value>],
    ) -> Result<(), ApiError> {
        let ns = key.namespace.as_deref();
        let want: Vec<SliceContent> = if meta::str_at(service, "/spec/type") == "ExternalName" {
            Vec::new()
        } else {
            desired::slices(service, pods)
        };
        let labels = desired::slice_labels(service);
        let mut existing: Vec<Arc<Value>> = self
            .slices
            .store()
            .list(ns)
            .into_iter()
            .filter(|s| {
                let l = meta::labels(s);
                l.get(desired::SERVICE_NAME_LABEL).and_then(Value::as_str)
                    == Some(key.name.as_str())
                    && l.get(desired::MANAGED_BY_LABEL).and_then(Value::as_str)
                        == Some(desired::MANAGED_BY)
            })
            .collect();
        existing.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
        // Slices that already hold exactly one wanted content are kept as they are.
        let mut unmatched = Vec::new();
        for content in want {
            let same = existing.iter().position(|s| {
                content_of(s) == content && s.at("/metadata/labels") == Some(&labels)
            });
            match same {
                Some(i) => {
                    existing.remove(i);
                }
                None => unmatched.push(content),
            }
        }
        let mut first_error = None;
        for content in unmatched {
            let result = match existing.pop() {
                Some(old) => {
                    let mut s = (*old).clone();
                    fill(&mut s, &labels, content);
                    self.client.update(&ENDPOINT_SLICE, ns, s).await.map(|_| ())
                }
                None => {
                    let mut s = json!({
                        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {
                            "generateName": format!("{}-", key.name),
                            "namespace": ns.unwrap_or(""),
                            "ownerReferences": [owner::controller_ref(&SERVICE, service)],
                        },
                        "addressType": "IPv4",
                    });
                    fill(&mut s, &labels, content);
                    match self.client.create(&ENDPOINT_SLICE, ns, s).await {
                        Ok(created) => {
                            self.expectations.created(key, &created);
                            Ok(())
                        }
                        Err(e) if is_namespace_terminating(&e) => Ok(()),
                        Err(e) => {
                            self.events.warning(
                                &SERVICE,
                                service,
                                "FailedToUpdateEndpointSlices",
                                format!(
                                    "Error updating Endpoint Slices for Service {key}: {}",
                                    e.message
                                ),
                            );
                            Err(e)
                        }
                    }
                }
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        for surplus in existing {
            match self
                .client
                .delete(&ENDPOINT_SLICE, ns, meta::name(&surplus), None)
                .await
            {
                Ok(()) => self.expectations.deleted(key, &surplus),
                Err(e) if e.code == 404 => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn sync_endpoints(
        &self,
        key: &ObjectKey,
        service: &Value,
        pods: &[Arc<Value>],
    ) -> Result<(), ApiError> {
        let ns = key.namespace.as_deref();
        let subsets = desired::subsets(service, pods);
        let labels = desired::endpoints_labels(service);
        let current = self.endpoints.store().get(key);
        let current_subsets = current
            .as_ref()
            .and_then(|e| e.get("subsets"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let current_labels = current
            .as_ref()
            .and_then(|e| e.at("/metadata/labels").cloned())
            .unwrap_or_else(|| json!({}));
        if current.is_some() && current_subsets == subsets && current_labels == labels {
            return Ok(());
        }
        let mut obj = match &current {
            Some(c) => (**c).clone(),
            None => json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": key.name, "namespace": ns.unwrap_or("")},
            }),
        };
        meta::set(&mut obj, &["metadata", "labels"], labels);
        if subsets.is_empty() {
            if let Some(m) = obj.as_object_mut() {
                m.remove("subsets");
            }
        } else {
            meta::set(&mut obj, &["subsets"], Value::Array(subsets));
        }
        let result = match current {
            Some(_) => self.client.update(&ENDPOINTS, ns, obj).await,
            None => self.client.create(&ENDPOINTS, ns, obj).await,
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_namespace_terminating(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The content an existing slice holds.
fn content_of(slice: &Value) -> SliceContent {
    let list = |f: &str| {
        slice
            .get(f)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    SliceContent {
        ports: list("ports"),
        endpoints: list("endpoints"),
    }
}

fn fill(slice: &mut Value, labels: &Value, content: SliceContent) {
    meta::set(slice, &["metadata", "labels"], labels.clone());
    meta::set(slice, &["addressType"], json!("IPv4"));
    meta::set(slice, &["ports"], Value::Array(content.ports));
    meta::set(slice, &["endpoints"], Value::Array(content.endpoints));
}
