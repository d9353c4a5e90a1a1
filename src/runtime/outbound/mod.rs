//! Every HTTP client ocaas uses to call out: to sandboxes' gateways, to model providers. None
//! follows a redirect (a provider or a sandbox answering `302 Location: http://127.0.0.1/…`
//! would otherwise aim the server at itself) or uses a proxy from the environment. Calls to a
//! tenant-chosen URL also go through `PublicOnly`: the name is resolved once per connection,
//! every address is checked, and the connection goes to the very addresses checked — no
//! second lookup an attacker's DNS could answer differently (rebinding).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::egress::is_public;

type Lookup = dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> + Send + Sync;

/// A resolver that answers only names whose every address is public (`egress::is_public`).
#[derive(Clone)]
pub struct PublicOnly {
    lookup: Arc<Lookup>,
}

impl Default for PublicOnly {
    /// The system's resolver, at most 5 s a name.
    fn default() -> Self {
        PublicOnly::with_lookup(|host| {
            Box::pin(async move {
                let found = tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((host.as_str(), 0))).await;
                let found = found.map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "name lookup timed out"))??;
                Ok(found.map(|a| a.ip()).collect())
            })
        })
    }
}

impl PublicOnly {
    /// A resolver over another lookup (tests: a name whose answer changes).
    pub fn with_lookup<F, Fut>(lookup: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static,
    {
        PublicOnly { lookup: Arc::new(move |host| Box::pin(lookup(host))) }
    }

    /// The host's addresses, if there are some and all are public; else why not.
    pub async fn check(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Some(ip) = literal(host) {
            return if is_public(ip) { Ok(vec![ip]) } else { Err(format!("`{host}` is not a public address")) };
        }
        let found = (self.lookup)(host.to_owned()).await.map_err(|_| format!("`{host}` could not be resolved"))?;
        if found.is_empty() || found.iter().any(|ip| !is_public(*ip)) {
            return Err(format!("`{host}` is not a public address"));
        }
        Ok(found)
    }
}

/// A tenant-given URL's form (`http(s)`, a host, at most `max` characters) and, unless
/// `allow_private`, that its host is or resolves to public addresses only; else why not.
pub async fn check_url(raw: &str, max: usize, allow_private: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(raw.trim()).map_err(|_| "not a URL".to_owned())?;
    if !matches!(url.scheme(), "http" | "https") || raw.len() > max || url.host_str().is_none() {
        return Err(format!("must be an http(s) URL of at most {max} characters"));
    }
    if !allow_private {
        PublicOnly::default().check(url.host_str().unwrap_or_default()).await?;
    }
    Ok(url)
}

/// The host of `url` when it is a literal address that is not public (`http://10.0.0.1/…`,
/// `http://[::1]/…`): no resolver sees those, so a client resolving through `PublicOnly` would
/// connect to it unchecked; callers refuse it before sending.
pub fn private_literal(url: &str) -> Option<String> {
    let host = url::Url::parse(url).ok()?.host_str()?.to_owned();
    literal(&host).is_some_and(|ip| !is_public(ip)).then_some(host)
}

/// The address a URL's host names literally (`203.0.113.7`, `[::1]`), which no resolver sees.
pub fn literal(host: &str) -> Option<IpAddr> {
    host.trim_matches(['[', ']']).parse().ok()
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let found = this.check(name.as_str()).await?;
            // The connector puts the URL's port in place of 0.
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// A client that never follows redirects nor uses a proxy; with `public_only`, it connects
/// only to public addresses, resolved once (an IP literal in the URL is checked by the caller
/// with `PublicOnly::check`, since no lookup happens for it).
pub fn client(connect: Duration, read: Option<Duration>, public_only: Option<PublicOnly>) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().connect_timeout(connect).redirect(reqwest::redirect::Policy::none()).no_proxy();
    if let Some(read) = read {
        builder = builder.read_timeout(read);
    }
    if let Some(resolver) = public_only {
        builder = builder.dns_resolver(Arc::new(resolver));
    }
    builder.build()
}

#[cfg(test)]
mod tests;
