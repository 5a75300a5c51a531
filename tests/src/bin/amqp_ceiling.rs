//! The bare-lapin ceiling of RabbitMQ on this machine, for BENCHMARKS.md: what the AMQP
//! client celery-web uses reaches with nothing of celery-web around it, on a queue declared
//! as kombu declares one (durable, classic) with persistent messages of a task message's
//! size and headers.
//!
//! Run with:
//!
//! ```sh
//! cargo run --release -p celery-web-tests --bin amqp_ceiling -- \
//!     --url amqp://guest:guest@127.0.0.1:5672/%2f --tasks 20000 --senders 8 --prefetch 256
//! ```
//!
//! 1. **publish**: `--tasks` messages, each `basic.publish` followed by waiting for its
//!    confirm, from `--senders` concurrent loops on one confirming channel of a
//!    single-thread runtime (as celery-web's `bench` sends);
//! 2. **drain**: one consumer with `basic.qos(--prefetch)`, acking 64 deliveries at a time
//!    (`multiple`): the most a consumer that does nothing else gets out of RabbitMQ;
//! 3. **latency**: with the consumer idle, 1,000 messages 2 ms apart; publish → delivery.
//!
//! Prints one JSON line.

use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_core::Stream;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const QUEUE: &str = "amqp-ceiling";

struct Options {
    url: String,
    tasks: usize,
    senders: usize,
    prefetch: u16,
}

fn options() -> Options {
    let mut options = Options {
        url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
        tasks: 20_000,
        senders: 8,
        prefetch: 256,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [name, value] = pair else {
            panic!("options come in pairs: --name value")
        };
        match name.as_str() {
            "--url" => options.url.clone_from(value),
            "--tasks" => options.tasks = value.parse().expect("--tasks N"),
            "--senders" => options.senders = value.parse().expect("--senders N"),
            "--prefetch" => options.prefetch = value.parse().expect("--prefetch N"),
            other => panic!("unknown option {other} (--url, --tasks, --senders, --prefetch)"),
        }
    }
    options
}

/// A message the size of celery-web's bench task, with Celery's headers.
fn message(sent_at_us: i64) -> (Vec<u8>, BasicProperties) {
    let id = uuid::Uuid::new_v4().to_string();
    let body = format!(
        r#"[[{sent_at_us}], {{}}, {{"callbacks": null, "errbacks": null, "chain": null, "chord": null}}]"#
    );
    let mut headers = FieldTable::default();
    let text = |value: &str| AMQPValue::LongString(LongString::from(value));
    for (name, value) in [
        ("lang", text("py")),
        ("task", text("celery_web.bench.noop")),
        ("id", text(&id)),
        ("shadow", AMQPValue::Void),
        ("eta", AMQPValue::Void),
        ("expires", AMQPValue::Void),
        ("group", AMQPValue::Void),
        ("group_index", AMQPValue::Void),
        ("retries", AMQPValue::LongLongInt(0)),
        ("root_id", text(&id)),
        ("parent_id", AMQPValue::Void),
        ("argsrepr", text(&format!("({sent_at_us},)"))),
        ("kwargsrepr", text("{}")),
        ("origin", text("gen1234@bench-host")),
        ("ignore_result", AMQPValue::Boolean(false)),
    ] {
        headers.insert(name.into(), value);
    }
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_correlation_id(id.as_str().into())
        .with_reply_to(uuid::Uuid::new_v4().to_string().as_str().into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(headers);
    (body.into_bytes(), properties)
}

async fn publish_confirmed(channel: &Channel, sent_at_us: i64) {
    let (body, properties) = message(sent_at_us);
    channel
        .basic_publish(
            "".into(),
            QUEUE.into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await
        .expect("basic.publish")
        .await
        .expect("confirmed");
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The `sent_at` a message of [`message`] carries.
fn sent_at(body: &[u8]) -> i64 {
    let text = std::str::from_utf8(body).expect("utf-8");
    text[2..text.find(']').expect("args")]
        .parse()
        .expect("sent_at")
}

/// The consumer's next delivery.
async fn next(consumer: &mut lapin::Consumer) -> Option<lapin::Result<lapin::message::Delivery>> {
    std::future::poll_fn(|cx| Pin::new(&mut *consumer).poll_next(cx)).await
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[index] as f64 / 1000.0
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(options));
}

async fn run(options: Options) {
    let connection = Connection::connect(&options.url, ConnectionProperties::default())
        .await
        .expect("connect");
    let publisher = connection.create_channel().await.expect("channel");
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    publisher
        .queue_declare(
            QUEUE.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue.declare");
    publisher
        .queue_purge(QUEUE.into(), QueuePurgeOptions::default())
        .await
        .expect("queue.purge");

    // 1. publish with confirms
    let clock = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for index in 0..options.senders {
        let channel = publisher.clone();
        let share =
            options.tasks / options.senders + usize::from(index < options.tasks % options.senders);
        loops.spawn(async move {
            for _ in 0..share {
                publish_confirmed(&channel, now_us()).await;
            }
        });
    }
    while let Some(done) = loops.join_next().await {
        done.expect("sender");
    }
    let published = clock.elapsed();

    // 2. drain, acking each delivery
    let consumer_channel = connection.create_channel().await.expect("channel");
    consumer_channel
        .basic_qos(options.prefetch, BasicQosOptions { global: true })
        .await
        .expect("basic.qos");
    let mut consumer = consumer_channel
        .basic_consume(
            QUEUE.into(),
            "ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    let clock = Instant::now();
    for received in 1..=options.tasks {
        let delivery = next(&mut consumer)
            .await
            .expect("a delivery")
            .expect("no consumer error");
        // The fastest a bare consumer settles: one `basic.ack` with `multiple` per 64.
        if received % 64 == 0 || received == options.tasks {
            delivery
                .ack(BasicAckOptions { multiple: true })
                .await
                .expect("basic.ack");
        }
    }
    let drained = clock.elapsed();

    // 3. latency: publish -> delivery, 2 ms apart
    let latency_tasks = 1_000;
    let sender = {
        let channel = publisher.clone();
        tokio::spawn(async move {
            for _ in 0..latency_tasks {
                publish_confirmed(&channel, now_us()).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut latencies = Vec::with_capacity(latency_tasks);
    for _ in 0..latency_tasks {
        let delivery = next(&mut consumer)
            .await
            .expect("a delivery")
            .expect("no consumer error");
        latencies.push(now_us() - sent_at(&delivery.data));
        delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("basic.ack");
    }
    sender.await.expect("latency sender");
    latencies.sort_unstable();

    println!(
        "{}",
        serde_json::json!({
            "tasks": options.tasks,
            "senders": options.senders,
            "prefetch": options.prefetch,
            "publish_confirmed_per_s": (options.tasks as f64 / published.as_secs_f64()).round(),
            "consume_ack_per_s": (options.tasks as f64 / drained.as_secs_f64()).round(),
            "latency_p50_ms": percentile(&latencies, 50.0),
            "latency_p99_ms": percentile(&latencies, 99.0),
        })
    );
    let _ = connection.close(200, "done".into()).await;
}
