//! The typed client's calls for interpreter sessions.

use reqwest::Method;

use super::{Client, ClientError, url_escape};
use crate::proto::{
    CheckpointRequest, CreateSession, ExecuteRequest, Execution, InputAnswer, InputAnswered,
    Interrupted, KernelSpecInfo, RestoreRequest, Restored, SessionCheckpoint, Task,
};

fn session_path(id: &str, suffix: &str) -> String {
    format!("/api/v1/sessions/{}{suffix}", url_escape(id))
}

impl Client {
    /// The Jupyter kernels installed on the server.
    pub async fn kernels(&self) -> Result<Vec<KernelSpecInfo>, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/kernels"))
            .await
    }

    /// Starts a session; it is `running` once its kernel is ready.
    pub async fn create_session(&self, request: &CreateSession) -> Result<Task, ClientError> {
        self.json(self.request(Method::POST, "/api/v1/sessions").json(request))
            .await
    }

    /// Queues code in a session.
    pub async fn execute(
        &self,
        session: &str,
        request: &ExecuteRequest,
    ) -> Result<Execution, ClientError> {
        self.json(
            self.request(Method::POST, &session_path(session, "/executions"))
                .json(request),
        )
        .await
    }

    /// An execution as the log tells it, waiting up to `wait_secs` for it to end.
    pub async fn execution(
        &self,
        session: &str,
        execution: &str,
        wait_secs: f64,
    ) -> Result<Execution, ClientError> {
        let path = session_path(session, &format!("/executions/{}", url_escape(execution)));
        self.json(
            self.request(Method::GET, &path)
                .query(&[("wait", wait_secs.to_string())]),
        )
        .await
    }

    /// Answers the input an execution waits for.
    pub async fn answer_input(
        &self,
        session: &str,
        answer: &InputAnswer,
    ) -> Result<InputAnswered, ClientError> {
        self.json(
            self.request(Method::POST, &session_path(session, "/input"))
                .json(answer),
        )
        .await
    }

    pub async fn interrupt_session(&self, session: &str) -> Result<Interrupted, ClientError> {
        self.json(self.request(Method::POST, &session_path(session, "/interrupt")))
            .await
    }

    pub async fn restart_session(&self, session: &str) -> Result<Task, ClientError> {
        self.json(self.request(Method::POST, &session_path(session, "/restart")))
            .await
    }

    pub async fn close_session(&self, session: &str) -> Result<Task, ClientError> {
        self.json(self.request(Method::POST, &session_path(session, "/close")))
            .await
    }

    /// Saves the session's variables on the server.
    pub async fn checkpoint_session(
        &self,
        session: &str,
        request: &CheckpointRequest,
    ) -> Result<SessionCheckpoint, ClientError> {
        self.json(
            self.request(Method::POST, &session_path(session, "/checkpoints"))
                .json(request),
        )
        .await
    }

    /// The session's checkpoints, oldest first.
    pub async fn session_checkpoints(
        &self,
        session: &str,
    ) -> Result<Vec<SessionCheckpoint>, ClientError> {
        self.json(self.request(Method::GET, &session_path(session, "/checkpoints")))
            .await
    }

    /// Puts a checkpoint's variables in the place of the session's.
    pub async fn restore_session(
        &self,
        session: &str,
        checkpoint_id: &str,
    ) -> Result<Restored, ClientError> {
        let request = RestoreRequest {
            checkpoint_id: checkpoint_id.to_string(),
        };
        self.json(
            self.request(Method::POST, &session_path(session, "/restore"))
                .json(&request),
        )
        .await
    }
}
