//! The typed client's calls for interpreter sessions.

use reqwest::Method;

use super::{Client, ClientError, url_escape};
use crate::proto::{
    CreateSession, ExecuteRequest, Execution, InputAnswer, InputAnswered, Interrupted,
    KernelSpecInfo, Task,
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
}
