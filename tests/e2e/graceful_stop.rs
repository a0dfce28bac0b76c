//! A process stopped with SIGTERM after doing work stops cleanly: exit code 0 and not one `ERROR`
//! line in its log, whichever broker it uses. (A broker client that leaves its connection to the
//! runtime's shutdown logs errors some of the time, not always: the scenario stops three
//! processes.)

use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::support::{
    create_product, create_user, wait_final, App, ImageServer, Process, Stack, PROCESSING,
};

pub async fn a_graceful_stop_logs_no_errors(stack: &Stack) {
    let images = ImageServer::start().await;
    for round in 0..3 {
        start_work_and_stop(stack, &images, round).await;
    }
}

async fn start_work_and_stop(stack: &Stack, images: &ImageServer, round: usize) {
    let mut pipeline = Process::start_with_logs(stack, "pipeline", &[]);
    let mut stderr = pipeline.child.stderr.take().expect("stderr is piped");
    // Read while it runs: a full pipe would block the process.
    let log = tokio::spawn(async move {
        let mut log = String::new();
        stderr.read_to_string(&mut log).await.unwrap();
        log
    });
    let app = App::at(&pipeline.api_base().await);
    let user = create_user(&app).await;
    let id = create_product(
        &app,
        user,
        &[images.image(320, 240, &format!("stop{round}"))],
    )
    .await;
    let product = wait_final(&app, id, PROCESSING).await;
    assert_eq!(product["status"], "done", "{product}");

    // Idle for a moment, as a process mostly is when it is told to stop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let exit = pipeline.terminate(Duration::from_secs(30)).await;
    let log = log.await.unwrap();
    assert!(exit.success(), "{exit}; the log:\n{log}");
    let errors: Vec<&str> = log.lines().filter(|line| line.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "a graceful stop (round {round}) logged errors:\n{}",
        errors.join("\n")
    );
}
