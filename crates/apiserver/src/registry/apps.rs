//! Strategies for the workload kinds (apps/v1, batch/v1): pod-template defaults, selector
//! validation, generation tracking and the upstream table columns.

use std::sync::Arc;

use ledge_api::Pointer as _;
use ledge_api::StatusCause;
use serde_json::{Value, json};

use super::Strategy;
use super::generic::{self, Generic, invalid, required};
use crate::table::{self, Column, col, wide};

/// The strategy for an apps/v1 resource.
pub fn strategy(plural: &str) -> Arc<dyn Strategy> {
    match plural {
        "deployments" => Arc::new(Workload(WorkloadKind::Deployment)),
        "replicasets" => Arc::new(Workload(WorkloadKind::ReplicaSet)),
        "daemonsets" => Arc::new(Workload(WorkloadKind::DaemonSet)),
        "statefulsets" => Arc::new(Workload(WorkloadKind::StatefulSet)),
        _ => Arc::new(Generic),
    }
}

/// The strategy for a batch/v1 resource.
pub fn batch_strategy(plural: &str) -> Arc<dyn Strategy> {
    match plural {
        "jobs" => Arc::new(Jobs),
        "cronjobs" => Arc::new(CronJobs),
        _ => Arc::new(Generic),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WorkloadKind {
    Deployment,
    ReplicaSet,
    DaemonSet,
    StatefulSet,
}

struct Workload(WorkloadKind);

/// Validate `spec.selector` against `spec.template.metadata.labels` (upstream: selector
/// required and must match the template).
fn validate_selector(obj: &Value, causes: &mut Vec<StatusCause>) {
    let Some(sel) = obj.at("/spec/selector") else {
        causes.push(required("spec.selector"));
        return;
    };
    let labels = obj
        .at("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    match ledge_api::selector::LabelSelector::from_json(sel) {
        Ok(s) if s.is_empty() => causes.push(invalid(
            "spec.selector",
            sel,
            "empty selector is invalid for deployment",
        )),
        Ok(s) => {
            if !s.matches(&labels) {
                causes.push(invalid(
                    "spec.template.metadata.labels",
                    &Value::Object(labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
        Err(e) => causes.push(invalid("spec.selector", sel, &e.to_string())),
    }
}

impl Strategy for Workload {
    fn defaults(&self, obj: &mut Value) {
        if let Some(spec) = obj.at_mut("/spec/template/spec") {
            generic::default_pod_spec(spec);
        }
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        match self.0 {
            WorkloadKind::Deployment => {
                spec.entry("replicas").or_insert(json!(1));
                spec.entry("revisionHistoryLimit").or_insert(json!(10));
                spec.entry("progressDeadlineSeconds").or_insert(json!(600));
                let strategy = spec.entry("strategy").or_insert(json!({}));
                if let Some(s) = strategy.as_object_mut() {
                    s.entry("type").or_insert(json!("RollingUpdate"));
                    if s.get("type") == Some(&json!("RollingUpdate")) {
                        let ru = s.entry("rollingUpdate").or_insert(json!({}));
                        if let Some(ru) = ru.as_object_mut() {
                            ru.entry("maxUnavailable").or_insert(json!("25%"));
                            ru.entry("maxSurge").or_insert(json!("25%"));
                        }
                    }
                }
            }
            WorkloadKind::ReplicaSet => {
                spec.entry("replicas").or_insert(json!(1));
            }
            WorkloadKind::DaemonSet => {
                spec.entry("revisionHistoryLimit").or_insert(json!(10));
                spec.entry("updateStrategy").or_insert(
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                );
            }
            WorkloadKind::StatefulSet => {
                spec.entry("replicas").or_insert(json!(1));
                spec.entry("podManagementPolicy")
                    .or_insert(json!("OrderedReady"));
                spec.entry("revisionHistoryLimit").or_insert(json!(10));
                spec.entry("updateStrategy")
                    .or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
                spec.entry("persistentVolumeClaimRetentionPolicy")
                    .or_insert(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
            }
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<StatusCause> {
        let mut causes =
            generic::validate_pod_spec(obj.at("/spec/template/spec"), "spec.template.spec");
        validate_selector(obj, &mut causes);
        if let Some(r) = obj.at("/spec/replicas")
            && r.as_i64().is_none_or(|n| n < 0)
        {
            causes.push(invalid(
                "spec.replicas",
                r,
                "must be greater than or equal to 0",
            ));
        }
        causes
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        let images = [
            wide(
                "Containers",
                "string",
                "Names of each container in the template.",
            ),
            wide(
                "Images",
                "string",
                "Images referenced by each container in the template.",
            ),
            wide("Selector", "string", "Label selector for pods."),
        ];
        let mut cols = match self.0 {
            WorkloadKind::Deployment => vec![
                col("Ready", "string", "Number of the pod with ready state"),
                col(
                    "Up-to-date",
                    "string",
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                ),
                col(
                    "Available",
                    "string",
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                ),
                table::AGE,
            ],
            WorkloadKind::ReplicaSet => vec![
                col("Desired", "integer", "Number of desired pods."),
                col("Current", "integer", "Number of actual replicas."),
                col(
                    "Ready",
                    "integer",
                    "The number of ready replicas for this replica set.",
                ),
                table::AGE,
            ],
            WorkloadKind::DaemonSet => vec![
                col(
                    "Desired",
                    "integer",
                    "The total number of nodes that should be running the daemon pod.",
                ),
                col(
                    "Current",
                    "integer",
                    "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
                ),
                col(
                    "Ready",
                    "integer",
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
                ),
                col(
                    "Up-to-date",
                    "integer",
                    "The total number of nodes that are running updated daemon pod",
                ),
                col(
                    "Available",
                    "integer",
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
                ),
                col(
                    "Node Selector",
                    "string",
                    "NodeSelector is a selector which must be true for the pod to fit on a node.",
                ),
                table::AGE,
            ],
            WorkloadKind::StatefulSet => vec![
                col("Ready", "string", "Number of the pod with ready state"),
                table::AGE,
            ],
        };
        cols.extend(images);
        cols
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let st = |f: &str| table::int(obj, &format!(".status.{f}"));
        let mut cells = match self.0 {
            WorkloadKind::Deployment => vec![
                json!(format!(
                    "{}/{}",
                    st("readyReplicas"),
                    table::int(obj, ".spec.replicas")
                )),
                json!(st("updatedReplicas")),
                json!(st("availableReplicas")),
                table::age(obj),
            ],
            WorkloadKind::ReplicaSet => vec![
                json!(table::int(obj, ".spec.replicas")),
                json!(st("replicas")),
                json!(st("readyReplicas")),
                table::age(obj),
            ],
            WorkloadKind::DaemonSet => vec![
                json!(st("desiredNumberScheduled")),
                json!(st("currentNumberScheduled")),
                json!(st("numberReady")),
                json!(st("updatedNumberScheduled")),
                json!(st("numberAvailable")),
                json!(table::selector_text(
                    obj.at("/spec/template/spec/nodeSelector")
                )),
                table::age(obj),
            ],
            WorkloadKind::StatefulSet => vec![
                json!(format!(
                    "{}/{}",
                    st("readyReplicas"),
                    table::int(obj, ".spec.replicas")
                )),
                table::age(obj),
            ],
        };
        let (names, images) = generic::containers_images(obj, ".spec.template.spec");
        cells.extend([
            names,
            images,
            json!(selector_summary(obj.at("/spec/selector"))),
        ]);
        cells
    }
}

/// A metav1.LabelSelector printed the way kubectl does (`app=web,tier in (a,b)`).
fn selector_summary(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(
            match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                other => format!("{key} {other}"),
            },
        );
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

struct Jobs;

impl Strategy for Jobs {
    fn defaults(&self, obj: &mut Value) {
        if let Some(spec) = obj.at_mut("/spec/template/spec") {
            generic::default_pod_spec(spec);
        }
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        // Upstream `SetDefaults_Job`: both unset means one pod to completion; parallelism alone
        // is a work queue (completions stays unset).
        if !spec.contains_key("completions") && !spec.contains_key("parallelism") {
            spec.insert("completions".into(), json!(1));
        }
        spec.entry("parallelism").or_insert(json!(1));
        spec.entry("backoffLimit").or_insert(json!(6));
        spec.entry("completionMode").or_insert(json!("NonIndexed"));
        spec.entry("suspend").or_insert(json!(false));
        if spec.get("manualSelector").and_then(Value::as_bool) != Some(true) {
            generate_job_selector(obj);
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<StatusCause> {
        let mut causes =
            generic::validate_pod_spec(obj.at("/spec/template/spec"), "spec.template.spec");
        let policy = table::text(obj, ".spec.template.spec.restartPolicy");
        if policy == "Always" {
            causes.push(StatusCause {
                reason: "FieldValueNotSupported".into(),
                message: "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".into(),
                field: "spec.template.spec.restartPolicy".into(),
            });
        }
        causes
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            col("Status", "string", "Status of the job."),
            col(
                "Completions",
                "string",
                "The desired number of successfully finished pods the job should be run with.",
            ),
            col("Duration", "string", "Time required to complete the job."),
            table::AGE,
            wide(
                "Containers",
                "string",
                "Names of each container in the template.",
            ),
            wide(
                "Images",
                "string",
                "Images referenced by each container in the template.",
            ),
            wide("Selector", "string", "Label selector for pods."),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let conditions = table::path(obj, ".status.conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let has = |t: &str| {
            conditions.iter().any(|c| {
                c.get("type") == Some(&json!(t)) && c.get("status") == Some(&json!("True"))
            })
        };
        let status = if has("Complete") {
            "Complete"
        } else if has("Failed") {
            "Failed"
        } else if has("Suspended") {
            "Suspended"
        } else {
            "Running"
        };
        let completions = match obj.at("/spec/completions").and_then(Value::as_i64) {
            Some(c) => format!("{}/{c}", table::int(obj, ".status.succeeded")),
            None => format!(
                "{}/1 of {}",
                table::int(obj, ".status.succeeded"),
                table::int(obj, ".spec.parallelism")
            ),
        };
        let parse = |p: &str| chrono::DateTime::parse_from_rfc3339(table::text(obj, p)).ok();
        let duration = match (parse(".status.startTime"), parse(".status.completionTime")) {
            (Some(s), Some(e)) => table::human_duration((e - s).num_seconds()),
            (Some(s), None) => table::human_duration(
                (chrono::Utc::now() - s.with_timezone(&chrono::Utc)).num_seconds(),
            ),
            _ => String::new(),
        };
        let (names, images) = generic::containers_images(obj, ".spec.template.spec");
        vec![
            json!(status),
            json!(completions),
            json!(duration),
            table::age(obj),
            names,
            images,
            json!(selector_summary(obj.at("/spec/selector"))),
        ]
    }
}

/// Upstream `generateSelector` (job strategy `PrepareForCreate`): the pods of a Job are labelled
/// with its uid and name (current and legacy keys) and selected by the uid, so no two Jobs share
/// pods. A Job without labels gets its template's, as upstream shows them.
fn generate_job_selector(obj: &mut Value) {
    let s = |p: &str| obj.at(p).and_then(Value::as_str).unwrap_or("").to_string();
    let (uid, name) = (s("/metadata/uid"), s("/metadata/name"));
    if uid.is_empty() {
        return;
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let template = spec.entry("template").or_insert(json!({}));
    if let Some(t) = template.as_object_mut() {
        let meta = t.entry("metadata").or_insert(json!({}));
        if let Some(m) = meta.as_object_mut() {
            let labels = m.entry("labels").or_insert(json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            if let Some(l) = labels.as_object_mut() {
                for key in ["job-name", "batch.kubernetes.io/job-name"] {
                    l.entry(key).or_insert(json!(name));
                }
                for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
                    l.entry(key).or_insert(json!(uid));
                }
            }
        }
    }
    let selector = spec.entry("selector").or_insert(json!({}));
    if let Some(sel) = selector.as_object_mut() {
        let ml = sel.entry("matchLabels").or_insert(json!({}));
        if let Some(ml) = ml.as_object_mut() {
            ml.entry("batch.kubernetes.io/controller-uid")
                .or_insert(json!(uid));
        }
    }
    let template_labels = obj
        .at("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let empty = meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(|l| l.is_empty());
        if empty {
            meta.insert("labels".into(), template_labels);
        }
    }
}

struct CronJobs;

impl Strategy for CronJobs {
    fn defaults(&self, obj: &mut Value) {
        if let Some(spec) = obj.at_mut("/spec/jobTemplate/spec/template/spec") {
            generic::default_pod_spec(spec);
        }
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        spec.entry("concurrencyPolicy").or_insert(json!("Allow"));
        spec.entry("suspend").or_insert(json!(false));
        spec.entry("successfulJobsHistoryLimit").or_insert(json!(3));
        spec.entry("failedJobsHistoryLimit").or_insert(json!(1));
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<StatusCause> {
        let mut causes = generic::validate_pod_spec(
            obj.at("/spec/jobTemplate/spec/template/spec"),
            "spec.jobTemplate.spec.template.spec",
        );
        let schedule = table::text(obj, ".spec.schedule");
        if schedule.is_empty() {
            causes.push(required("spec.schedule"));
        } else if schedule.contains("TZ") {
            causes.push(invalid(
                "spec.schedule",
                &json!(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        } else if !schedule.starts_with('@') && schedule.split_whitespace().count() != 5 {
            causes.push(invalid(
                "spec.schedule",
                &json!(schedule),
                "expected exactly 5 fields, found a different number",
            ));
        }
        match obj.at("/spec/timeZone").and_then(Value::as_str) {
            Some("") => causes.push(invalid(
                "spec.timeZone",
                &json!(""),
                "timeZone must be nil or non-empty string",
            )),
            Some(zone) => {
                if let Err(e) = ledge_api::time::time_zone(zone) {
                    causes.push(invalid("spec.timeZone", &json!(zone), &e));
                }
            }
            None => {}
        }
        causes
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            col("Schedule", "string", "The schedule in Cron format."),
            col(
                "Timezone",
                "string",
                "The time zone for the given schedule.",
            ),
            col(
                "Suspend",
                "boolean",
                "This flag tells the controller to suspend subsequent executions.",
            ),
            col(
                "Active",
                "integer",
                "A list of pointers to currently running jobs.",
            ),
            col(
                "Last Schedule",
                "string",
                "Information when was the last time the job was successfully scheduled.",
            ),
            table::AGE,
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let tz = table::text(obj, ".spec.timeZone");
        let last = table::path(obj, ".status.lastScheduleTime").and_then(Value::as_str);
        vec![
            table::cell(obj, ".spec.schedule"),
            json!(if tz.is_empty() { "<none>" } else { tz }),
            // Upstream `printBoolPtr`: "True", "False" or "<unset>".
            json!(match obj.at("/spec/suspend").and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            }),
            table::count(obj, ".status.active"),
            if last.is_some() {
                table::age_of(last)
            } else {
                json!("<none>")
            },
            table::age(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_get_a_selector_of_their_uid_and_labelled_pods() {
        let mut job = json!({"metadata": {"name": "pi", "uid": "u1"},
                             "spec": {"template": {"spec": {"containers": []}}}});
        Jobs.defaults(&mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}})
        );
        let labels = &job["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["job-name"], json!("pi"));
        assert_eq!(labels["batch.kubernetes.io/job-name"], json!("pi"));
        assert_eq!(labels["controller-uid"], json!("u1"));
        assert_eq!(job["metadata"]["labels"]["job-name"], json!("pi"));
        assert_eq!(
            (&job["spec"]["completions"], &job["spec"]["parallelism"]),
            (&json!(1), &json!(1))
        );
        let mut queue = json!({"metadata": {"name": "q", "uid": "u2"},
                               "spec": {"parallelism": 3, "manualSelector": true,
                                        "selector": {"matchLabels": {"a": "b"}}, "template": {}}});
        Jobs.defaults(&mut queue);
        assert!(queue["spec"].get("completions").is_none());
        assert_eq!(
            queue["spec"]["selector"],
            json!({"matchLabels": {"a": "b"}})
        );
    }
}
