//! The job view is the API's JSON: its shape is reviewed as a snapshot.

use bytes::Bytes;
use keyledger_domain::KeyDuration;
use keyledger_testkit::fault_proxy::{Fault, FaultProxy, RequestMatch};
use keyledger_testkit::s3::S3Server;

use crate::support::{ACCESS_KEY_ID, BUCKET, SECRET, aws_selection, harness, s3_options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_of_a_finished_job() {
    let server = S3Server::start(ACCESS_KEY_ID, SECRET).await.unwrap();
    server.create_bucket(BUCKET).await.unwrap();
    server
        .put_object(
            BUCKET,
            "runs/a.csv",
            Bytes::from_static(b"gene,count\nBRCA1,12\n"),
        )
        .await
        .unwrap();
    server
        .put_object(
            BUCKET,
            "runs/b.csv",
            Bytes::from_static(b"gene,count\nTP53,7\n"),
        )
        .await
        .unwrap();
    let proxy = FaultProxy::start(server.address()).await.unwrap();
    proxy.inject(
        RequestMatch::get().path_contains("b.csv"),
        Fault::FlipByte { offset: 3 },
        10,
    );
    let endpoint = proxy.endpoint();
    let h = harness(move |config| {
        config.s3 = s3_options(&endpoint);
        // One file at a time: the order of the files is part of the snapshot.
        config.small_files_in_parallel = 1;
    })
    .await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;

    let view = h.ingest(aws_selection(BUCKET, "runs/", r"\.csv$")).await;

    insta::assert_json_snapshot!(view, {
        ".id" => "[id]",
        ".external_key" => "[external key]",
        ".batch_id" => "[batch id]",
        ".store_path" => "[store path]",
    });
}
