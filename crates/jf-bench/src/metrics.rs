//! Prometheus text-format metrics, read from the kube-apiserver's and the operator's
//! `/metrics`, and their differences between two moments.

use std::collections::BTreeMap;

use anyhow::Context as _;
use kube::Client;

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Sample>);

impl Samples {
    /// Parses the text format; lines that are not samples (comments, garbage) are skipped.
    pub fn parse(text: &str) -> Self {
        Self(text.lines().filter_map(parse_line).collect())
    }

    /// The sum of every sample of `name` whose labels include all of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.matching(name, filter).map(|sample| sample.value).sum()
    }

    /// The samples of `name` whose labels include all of `filter`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |sample| {
            sample.name == name
                && filter
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(value))
        })
    }

    /// The sums of `name`'s samples, grouped by the values of the labels `keys`.
    pub fn by(&self, name: &str, keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
        let mut groups = BTreeMap::new();
        for sample in self.matching(name, &[]) {
            let key = keys
                .iter()
                .map(|key| sample.labels.get(*key).cloned().unwrap_or_default())
                .collect();
            *groups.entry(key).or_insert(0.0) += sample.value;
        }
        groups
    }
}

/// `after - before` per group, only the groups that changed.
pub fn difference(
    before: &BTreeMap<Vec<String>, f64>,
    after: &BTreeMap<Vec<String>, f64>,
) -> BTreeMap<Vec<String>, f64> {
    after
        .iter()
        .filter_map(|(key, value)| {
            let change = value - before.get(key).copied().unwrap_or(0.0);
            (change.abs() > f64::EPSILON).then(|| (key.clone(), change))
        })
        .collect()
}

/// The kube-apiserver's own metrics, read as the admin (`GET /metrics`).
pub async fn apiserver(client: &Client) -> anyhow::Result<Samples> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .context("failed to build the request for the API server's /metrics")?;
    let text = client
        .request_text(request)
        .await
        .context("failed to read the API server's /metrics")?;
    Ok(Samples::parse(&text))
}

/// Waits until the API server has served no request but to leases and non-resource URLs
/// (its own `/metrics`) for `settle`. Returns none once quiet, or the rate of requests still
/// coming after `timeout`.
pub async fn wait_for_quiet_apiserver(
    client: &Client,
    settle: std::time::Duration,
    timeout: std::time::Duration,
) -> anyhow::Result<Option<f64>> {
    let busy = |samples: &Samples| -> f64 {
        samples
            .matching("apiserver_request_total", &[])
            .filter(|sample| {
                let resource = sample.labels.get("resource").map_or("", String::as_str);
                !resource.is_empty() && resource != "leases"
            })
            .map(|sample| sample.value)
            .sum()
    };
    let started = std::time::Instant::now();
    let mut last = busy(&apiserver(client).await?);
    let mut since = std::time::Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let now = busy(&apiserver(client).await?);
        if now != last {
            if started.elapsed() > timeout {
                let seconds = since.elapsed().as_secs_f64().max(0.25);
                return Ok(Some((now - last) / seconds));
            }
            last = now;
            since = std::time::Instant::now();
        } else if since.elapsed() >= settle {
            return Ok(None);
        }
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    // A timestamp may follow the value.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `key="value",…}` and returns the labels and what follows the closing brace.
fn parse_labels(text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_key) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut characters = after_key.char_indices();
        let end = loop {
            match characters.next()? {
                (_, '\\') => match characters.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (index, '"') => break index,
                (_, other) => value.push(other),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        rest = &after_key[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_with_labels() {
        let text = r#"
# HELP apiserver_request_total Counter
apiserver_request_total{code="201",resource="namespaces",verb="CREATE"} 3
apiserver_request_total{code="200",resource="namespaces",verb="APPLY"} 2
apiserver_request_total{code="200",resource="configmaps",verb="LIST",odd="a\"b,c}"} 7 1700000000
jango_fett_reconciles_total{kind="Environment"} 12
jango_fett_leader 1
"#;
        let samples = Samples::parse(text);
        assert_eq!(samples.sum("apiserver_request_total", &[]), 12.0);
        assert_eq!(
            samples.sum("apiserver_request_total", &[("resource", "namespaces")]),
            5.0
        );
        assert_eq!(
            samples
                .matching("apiserver_request_total", &[("verb", "LIST")])
                .next()
                .and_then(|sample| sample.labels.get("odd").cloned()),
            Some("a\"b,c}".to_owned())
        );
        assert_eq!(
            samples.sum("jango_fett_reconciles_total", &[("kind", "Environment")]),
            12.0
        );
        assert_eq!(samples.sum("jango_fett_leader", &[]), 1.0);
        let by_verb = samples.by("apiserver_request_total", &["verb"]);
        assert_eq!(by_verb.get(&vec!["CREATE".to_owned()]), Some(&3.0));
    }

    #[test]
    fn differences_keep_what_changed() {
        let before = BTreeMap::from([(vec!["a".to_owned()], 1.0), (vec!["b".to_owned()], 2.0)]);
        let after = BTreeMap::from([
            (vec!["a".to_owned()], 1.0),
            (vec!["b".to_owned()], 5.0),
            (vec!["c".to_owned()], 1.0),
        ]);
        let change = difference(&before, &after);
        assert_eq!(change.len(), 2);
        assert_eq!(change.get(&vec!["b".to_owned()]), Some(&3.0));
        assert_eq!(change.get(&vec!["c".to_owned()]), Some(&1.0));
    }
}
