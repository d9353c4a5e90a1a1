//! The runtime conformance checks (`ocaas::runtime::conformance`) against the real engine, and
//! against the node link in front of it (an `ocaas node` on loopback over its pinned TLS): the
//! same answers the in-memory runtime gives in the unit tests, so the domains above cannot
//! tell which one they run on.

use std::sync::Arc;

use ocaas::runtime::Runtime;
use ocaas::runtime::conformance::{lifecycle, processes, spec};
use ocaas::runtime::docker::DockerRuntime;
use ocaas::runtime::sandbox::GATEWAY_PORT;

use crate::helpers::{sandbox_image, test_settings};

#[tokio::test]
async fn docker_and_a_node_in_front_of_it_pass_the_runtime_conformance_checks() {
    let image = tokio::task::spawn_blocking(sandbox_image).await.unwrap();
    let settings = test_settings();
    let docker: Arc<dyn Runtime> = Arc::new(DockerRuntime::connect().unwrap());
    docker.ensure_network(&settings.instances.egress).await.unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let deployment = format!("conformance-{tag}");
    let root = std::env::temp_dir().join(format!("ocaas-conformance-{tag}"));
    let spec = |what: &str| spec(&format!("ocaas-conf-{tag}-{what}"), &image, &root, &deployment);

    lifecycle(docker.as_ref(), &spec("docker"), GATEWAY_PORT).await.expect("Docker: lifecycle");
    processes(docker.as_ref(), &spec("docker-exec")).await.expect("Docker: processes");

    let shutdown = tokio_util::sync::CancellationToken::new();
    let node = ocaas::runtime::node::serve_loopback(docker.clone(), root.join("node"), shutdown.clone()).await.unwrap();
    lifecycle(&node, &spec("node"), GATEWAY_PORT).await.expect("through a node: lifecycle");
    processes(&node, &spec("node-exec")).await.expect("through a node: processes");
    shutdown.cancel();
    let _ = std::fs::remove_dir_all(&root);
}
