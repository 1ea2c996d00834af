//! Label selectors: requirements, matching, string form and `metav1.LabelSelector` conversion
//! (upstream `labels/selector.go` and `metav1.LabelSelectorAsSelector`).

use crate::Pointer as _;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::SelectorError;
use crate::validation::{is_qualified_name, is_valid_label_value};

/// The relation a [`Requirement`] checks between a label and its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key=a`.
    Equals,
    /// `key==a` (same meaning as `=`, kept for round-tripping).
    DoubleEquals,
    /// `key!=a`: the label is absent or differs.
    NotEquals,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>5`: the label is an integer greater than the value.
    GreaterThan,
    /// `key<5`: the label is an integer less than the value.
    LessThan,
}

impl Operator {
    /// Upstream's `selection.Operator` spelling (`in`, `notin`, `=`, `==`, `!=`, `exists`, `!`, `gt`, `lt`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::NotIn => "notin",
            Self::Equals => "=",
            Self::DoubleEquals => "==",
            Self::NotEquals => "!=",
            Self::Exists => "exists",
            Self::DoesNotExist => "!",
            Self::GreaterThan => "gt",
            Self::LessThan => "lt",
        }
    }
}

/// Read access to a label set, so selectors match JSON maps and Rust maps alike.
pub trait Labels {
    /// The value of label `key`, if present (non-string JSON values count as absent).
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for HashMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// One `key op values` condition of a label selector; all of a selector's requirements must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

/// Go's `%#v` of a `[]string`, which upstream prints for bad value sets.
fn go_strings(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Upstream `ErrorList.ToAggregate` text: duplicates dropped, several errors bracketed.
fn aggregate(mut errs: Vec<String>) -> String {
    errs.dedup();
    if errs.len() == 1 {
        return errs.remove(0);
    }
    format!("[{}]", errs.join(", "))
}

/// Validates a key like the parser does; the message is upstream's `field.Invalid` text.
pub(super) fn check_key(key: &str) -> Result<(), String> {
    let msgs = is_qualified_name(key);
    if msgs.is_empty() {
        return Ok(());
    }
    Err(format!("key: Invalid value: {key:?}: {}", msgs.join("; ")))
}

impl Requirement {
    /// Builds a validated requirement (upstream `NewRequirement`).
    ///
    /// # Errors
    /// [`SelectorError::InvalidRequirement`] when the key or a value is not a valid label
    /// key/value, or the number of values does not fit the operator.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        Self::checked(key, operator, values).map_err(SelectorError::InvalidRequirement)
    }

    pub(super) fn checked(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Self, String> {
        let mut errs = Vec::new();
        if let Err(e) = check_key(key) {
            errs.push(e);
        }
        let shown = go_strings(&values);
        let bad_set = |msg: &str| format!("values: Invalid value: {shown}: {msg}");
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                errs.push(bad_set(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(bad_set(
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errs.push(bad_set(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(bad_set(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = is_valid_label_value(v);
            if !msgs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {v:?}: {}",
                    msgs.join("; ")
                ));
            }
        }
        if !errs.is_empty() {
            return Err(aggregate(errs));
        }
        Ok(Self {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// The label key this requirement looks at.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The relation checked.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values compared against (sorted and unique when parsed from a string).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement (upstream `Requirement.Matches`).
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(listed),
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(listed),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [wanted]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(actual), Ok(wanted)) = (actual.parse::<i64>(), wanted.parse::<i64>())
                else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Exists => return f.write_str(&self.key),
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            other => other.as_str(),
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let joined = values.join(",");
        match self.operator {
            Operator::In | Operator::NotIn => write!(f, "{}{op}({joined})", self.key),
            _ => write!(f, "{}{op}{joined}", self.key),
        }
    }
}

/// A parsed label selector: every requirement must match. Also models upstream's "nothing"
/// selector (a missing `metav1.LabelSelector`), which matches no object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every label set (empty string, `{}` object).
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no label set (a `null` `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the `labelSelector` query syntax (`a=b,c!=d,e in (x,y),!f,g`).
    ///
    /// # Errors
    /// [`SelectorError::Syntax`] or [`SelectorError::Requirement`] with upstream's message.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut requirements = super::parse::parse(selector)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// Builds an equality selector from a label map without validation (upstream
    /// `SelectorFromValidatedSet`), e.g. a Service's `spec.selector`; empty matches everything.
    pub fn from_set<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut requirements: Vec<Requirement> = labels
            .into_iter()
            .map(|(k, v)| Requirement {
                key: k.to_string(),
                operator: Operator::Equals,
                values: vec![v.to_string()],
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self {
            requirements,
            nothing: false,
        }
    }

    /// Converts a `metav1.LabelSelector` JSON object (`matchLabels`, `matchExpressions`);
    /// `null` gives [`LabelSelector::nothing`], `{}` gives [`LabelSelector::everything`].
    ///
    /// # Errors
    /// [`SelectorError::Malformed`] for a wrong JSON shape, [`SelectorError::UnknownOperator`],
    /// or [`SelectorError::InvalidRequirement`] for invalid keys and values.
    pub fn from_json(selector: &Value) -> Result<Self, SelectorError> {
        let obj = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(obj) => obj,
            other => {
                return Err(SelectorError::Malformed(format!(
                    "expected an object, got {other}"
                )));
            }
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let v = v.as_str().ok_or_else(|| {
                        SelectorError::Malformed(format!("matchLabels[{k}] must be a string"))
                    })?;
                    requirements.push(Requirement::new(k, Operator::Equals, vec![v.to_string()])?);
                }
            }
            Some(_) => {
                return Err(SelectorError::Malformed(
                    "matchLabels must be an object".into(),
                ));
            }
        }
        let exprs = match obj.get("matchExpressions") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(exprs)) => exprs,
            Some(_) => {
                return Err(SelectorError::Malformed(
                    "matchExpressions must be a list".into(),
                ));
            }
        };
        for (i, expr) in exprs.iter().enumerate() {
            requirements.push(expression(i, expr)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when the selector does not restrict anything (upstream `Empty()`; false for nothing).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for the selector that matches nothing.
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether an object's `metadata.labels` satisfy the selector (missing labels = none).
    pub fn matches_object(&self, object: &Value) -> bool {
        let empty = Map::new();
        let labels = object
            .at("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        self.matches(labels)
    }

    /// The single value label `key` must have, if the selector pins it (`key=v`, `key in (v)`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

fn expression(i: usize, expr: &Value) -> Result<Requirement, SelectorError> {
    let malformed = |what: &str| SelectorError::Malformed(format!("matchExpressions[{i}].{what}"));
    let key = match expr.get("key") {
        None | Some(Value::Null) => "",
        Some(Value::String(k)) => k,
        Some(_) => return Err(malformed("key must be a string")),
    };
    let operator = match expr.get("operator").and_then(Value::as_str).unwrap_or("") {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => return Err(SelectorError::UnknownOperator(other.to_string())),
    };
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("values must be strings"))?,
        Some(_) => return Err(malformed("values must be a list")),
    };
    Requirement::new(key, operator, values)
}

impl fmt::Display for LabelSelector {
    /// The canonical string form (upstream `String()`); parsing it gives the selector back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
