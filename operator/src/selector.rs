//! Label selector matching (`matchLabels` and `matchExpressions`), for a
//! tenant's `allocationNamespaceSelector`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` are selected. An empty selector selects everything.
pub fn matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    for (k, v) in selector.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Ok(false);
        }
    }
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => return Err(format!("unknown selector operator {other:?}")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("tenant", "acme")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "NotIn".into(),
                values: Some(vec!["prod".into()]),
            }]),
        };
        assert_eq!(matches(&sel, &labels(&[("tenant", "acme")])), Ok(true));
        assert_eq!(
            matches(&sel, &labels(&[("tenant", "acme"), ("env", "dev")])),
            Ok(true)
        );
        assert_eq!(
            matches(&sel, &labels(&[("tenant", "acme"), ("env", "prod")])),
            Ok(false)
        );
        assert_eq!(matches(&sel, &labels(&[("tenant", "globex")])), Ok(false));
        assert_eq!(matches(&LabelSelector::default(), &labels(&[])), Ok(true));
        let exists = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".into(),
                operator: "Exists".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert_eq!(matches(&exists, &labels(&[("team", "")])), Ok(true));
        assert_eq!(matches(&exists, &labels(&[])), Ok(false));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Like".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(matches(&bad, &labels(&[])).is_err());
    }
}
