//! Exec on the Docker Engine API: captured one-shot commands (stdout and stderr apart, capped,
//! with a deadline) and interactive sessions on a pseudo-terminal.

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::ResizeExecOptions;
use futures_util::StreamExt;

use super::docker::{DockerRuntime, map_err};
use super::*;

impl DockerRuntime {
    pub(super) async fn exec_captured(&self, name: &str, request: ExecRequest) -> RuntimeResult<ExecOutput> {
        let options = CreateExecOptions {
            cmd: Some(request.cmd),
            env: Some(request.env),
            working_dir: request.working_dir,
            user: request.user,
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self.docker.create_exec(name, options).await.map_err(map_err)?;
        let mut output = ExecOutput::default();
        let deadline = request.timeout.map(|t| tokio::time::Instant::now() + t);
        if let StartExecResults::Attached { output: mut stream, .. } = self.docker.start_exec(&exec.id, None).await.map_err(map_err)? {
            loop {
                let next = match deadline {
                    Some(deadline) => match tokio::time::timeout_at(deadline, stream.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            output.timed_out = true;
                            return Ok(output);
                        }
                    },
                    None => stream.next().await,
                };
                let Some(frame) = next else { break };
                let (target, bytes) = match frame.map_err(map_err)? {
                    LogOutput::StdOut { message } => (&mut output.stdout, message),
                    LogOutput::StdErr { message } => (&mut output.stderr, message),
                    _ => continue,
                };
                let room = request.max_output.saturating_sub(target.len());
                if bytes.len() > room {
                    output.truncated = true;
                }
                target.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
        }
        let inspected = self.docker.inspect_exec(&exec.id).await.map_err(map_err)?;
        output.exit_code = Some(inspected.exit_code.unwrap_or(-1));
        Ok(output)
    }

    pub(super) async fn exec_interactive(&self, name: &str, request: TtyRequest) -> RuntimeResult<TtySession> {
        let config = ExecConfig {
            cmd: Some(request.cmd),
            env: Some(request.env),
            working_dir: request.working_dir,
            user: request.user,
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(true),
            // [rows, cols]: the shell starts with the right size, before any resize.
            console_size: Some(vec![usize::from(request.rows), usize::from(request.cols)]),
            ..Default::default()
        };
        let exec = self.docker.create_exec(name, config).await.map_err(map_err)?;
        let options = StartExecOptions { detach: false, tty: true, output_capacity: Some(64 << 10) };
        match self.docker.start_exec(&exec.id, Some(options)).await.map_err(map_err)? {
            StartExecResults::Attached { output, input } => Ok(TtySession {
                exec_id: exec.id,
                output: Box::pin(output.map(|frame| match frame {
                    Ok(frame) => Ok(frame.into_bytes()),
                    Err(error) => Err(std::io::Error::other(map_err(error))),
                })),
                input,
            }),
            StartExecResults::Detached => Err(RuntimeError::Other("the engine detached an attached exec".into())),
        }
    }

    pub(super) async fn resize_interactive(&self, exec_id: &str, cols: u16, rows: u16) -> RuntimeResult<()> {
        let options = ResizeExecOptions { h: i32::from(rows), w: i32::from(cols) };
        self.docker.resize_exec(exec_id, options).await.map_err(map_err)
    }

    pub(super) async fn finished_exit_code(&self, exec_id: &str) -> RuntimeResult<Option<i64>> {
        let inspected = self.docker.inspect_exec(exec_id).await.map_err(map_err)?;
        Ok(if inspected.running == Some(true) { None } else { inspected.exit_code })
    }
}
