//! `Telephony::ready_to_dial`: while a back end says it cannot dial (the freeswitch back end
//! while its event socket is down), the dialer claims no number; once it can, the campaign runs.
//! The real server, driven over HTTP, with the sim behind a gate the test opens.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{phone_numbers, poll, spawn_app_with_backend};
use outcall::telephony::{
    sim::SimBackend, BackendHealth, CallHandle, CallRequest, CallSettings, Telephony,
};
use serde_json::json;

struct Gated {
    sim: SimBackend,
    ready: AtomicBool,
}

impl Telephony for Gated {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn health(&self) -> BackendHealth {
        self.sim.health()
    }

    fn ready_to_dial(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn check_task(&self, settings: &CallSettings) -> Result<(), String> {
        self.sim.check_task(settings)
    }

    fn place_call(&self, request: CallRequest) -> CallHandle {
        self.sim.place_call(request)
    }
}

#[tokio::test]
async fn no_number_is_claimed_while_the_back_end_cannot_dial() {
    let gate = Arc::new(Gated {
        sim: SimBackend::new(0.001).with_history(),
        ready: AtomicBool::new(false),
    });
    let app = spawn_app_with_backend(gate.clone(), |_| {}).await;
    let id = app.create_task("gated").await;
    app.update_task(id, json!({"max_caps": 50, "max_concurrency": 5}))
        .await;
    let numbers = phone_numbers(1000, 4);
    app.import(id, &numbers).await;
    app.start(&[id]).await;

    // Absence cannot be polled for: give the runner a second (five of its 200 ms looks).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(gate.sim.calls().is_empty(), "{:?}", gate.sim.calls());
    for number in app.all_numbers(id).await {
        assert_eq!(number["call_status"], "init", "{number}");
        assert_eq!(number["outbound_call"], "1", "{number}");
    }

    gate.ready.store(true, Ordering::SeqCst);
    poll(Duration::from_secs(20), "every number done", || async {
        let numbers = app.all_numbers(id).await;
        let done = numbers
            .iter()
            .filter(|number| number["call_status"] == "done")
            .count();
        if done == numbers.len() {
            Ok(())
        } else {
            Err(format!("{done} of {} done", numbers.len()))
        }
    })
    .await;
    let mut dialed: Vec<String> = gate
        .sim
        .calls()
        .into_iter()
        .map(|call| call.dest_number)
        .collect();
    dialed.sort();
    assert_eq!(dialed, numbers);
}
