//! Container output (stdout and stderr, from the engine's log driver) on the Docker Engine API.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use super::docker::{DockerRuntime, map_err};
use super::*;

impl DockerRuntime {
    pub(super) fn logs_stream(&self, name: &str, tail: u32, follow: bool) -> LogStream {
        let options = LogsOptions { follow, stdout: true, stderr: true, tail: tail.to_string(), ..Default::default() };
        Box::pin(self.docker.logs(name, Some(options)).filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => Some(Ok(LogChunk { stderr: false, bytes: message })),
                Ok(LogOutput::StdErr { message }) => Some(Ok(LogChunk { stderr: true, bytes: message })),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(error) => Some(Err(map_err(error))),
            }
        }))
    }
}
