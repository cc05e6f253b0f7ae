//! Metrics of each upstream's endpoints, read from the client when
//! `/metrics` is scraped: the transport counts with atomics as calls go, and
//! knows nothing of Prometheus.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    upstream: String,
    endpoint: String,
}

/// Encodes the client's endpoints at each scrape.
#[derive(Debug)]
pub(crate) struct EndpointMetrics(pub(crate) framex_transport::Client);

impl Collector for EndpointMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let upstreams = self.0.upstreams();
        let endpoints: Vec<(EndpointLabels, &framex_transport::EndpointStatus)> = upstreams
            .iter()
            .flat_map(|upstream| {
                upstream.endpoints.iter().map(|endpoint| {
                    let labels = EndpointLabels {
                        upstream: upstream.url.clone(),
                        endpoint: endpoint.address.to_string(),
                    };
                    (labels, endpoint)
                })
            })
            .collect();
        if endpoints.is_empty() {
            return Ok(());
        }
        type Read = fn(&framex_transport::EndpointStatus) -> u64;
        let counters: [(&str, &str, Read); 3] = [
            (
                "framex_upstream_endpoint_requests",
                "Attempts sent to each endpoint of each upstream",
                |e| e.requests,
            ),
            (
                "framex_upstream_endpoint_failures",
                "Attempts that failed on the way to or from each endpoint (not the function's own errors)",
                |e| e.failures,
            ),
            (
                "framex_upstream_endpoint_ejections",
                "How many times each endpoint was left out after failing",
                |e| e.ejections,
            ),
        ];
        for (name, help, read) in counters {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, endpoint) in &endpoints {
                ConstCounter::new(read(endpoint)).encode(metric.encode_family(labels)?)?;
            }
        }
        type Gauge = fn(&framex_transport::EndpointStatus) -> f64;
        let gauges: [(&str, &str, Gauge); 3] = [
            (
                "framex_upstream_endpoint_in_flight",
                "Calls in flight on each endpoint",
                |e| e.in_flight as f64,
            ),
            (
                "framex_upstream_endpoint_ejected",
                "1 while an endpoint is left out after failing, else 0",
                |e| if e.ejected_for.is_some() { 1.0 } else { 0.0 },
            ),
            (
                "framex_upstream_endpoint_latency_ewma_seconds",
                "Moving average of each endpoint's answer latency",
                |e| e.latency_ewma.map_or(0.0, |d| d.as_secs_f64()),
            ),
        ];
        for (name, help, read) in gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, endpoint) in &endpoints {
                ConstGauge::new(read(endpoint)).encode(metric.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}
