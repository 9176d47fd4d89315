//! The project's own Rust client (laminar-client) against the real binary:
//! create a topic, produce with every codec, fetch back through the zero-copy
//! path, list offsets.

mod common;

use common::Laminar;
use laminar_client::{
    Acks, BatchBuilder, BatchReader, Client, ClientConfig, Compression, FetchOptions, NewTopic, OffsetSpec,
};

#[test]
fn produce_fetch_and_list_offsets_with_every_codec() {
    let l = Laminar::start(&[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = Client::connect(ClientConfig::new(&l.addr)).await.unwrap();
        let topic = NewTopic { name: "own".into(), partitions: 3, replication_factor: 1, configs: vec![] };
        let r = client.create_topics(&[topic], 5000).await.unwrap();
        assert_eq!(r[0].error_code, 0);
        let codecs = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];
        for (p, codec) in codecs.iter().enumerate() {
            let partition = (p % 3) as i32;
            let mut b = BatchBuilder::new(*codec);
            for i in 0..100 {
                b.append(
                    1_700_000_000_000 + i,
                    Some(format!("k{i}").as_bytes()),
                    Some(format!("{codec:?}-{i}").as_bytes()),
                    &[],
                )
                .unwrap();
            }
            let res = client.produce("own", partition, b.finish().unwrap(), Acks::All, 5000).await.unwrap();
            assert_eq!(res.error_code, 0, "{codec:?}");
            // Read it back from where it was written.
            let f = client.fetch("own", partition, res.base_offset, 1 << 20, FetchOptions::default()).await.unwrap();
            assert_eq!(f.error_code, 0);
            let values: Vec<String> = BatchReader::new(f.records)
                .flat_map(|batch| batch.unwrap().records().unwrap().map(|r| r.unwrap()).collect::<Vec<_>>())
                .filter(|r| r.offset >= res.base_offset)
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
                .take(100)
                .collect();
            assert_eq!(values, (0..100).map(|i| format!("{codec:?}-{i}")).collect::<Vec<_>>());
        }
        let latest = client.list_offset("own", 0, OffsetSpec::Latest).await.unwrap();
        assert_eq!(latest.offset, 200, "partition 0 got the none and lz4 batches");
        let earliest = client.list_offset("own", 0, OffsetSpec::Earliest).await.unwrap();
        assert_eq!(earliest.offset, 0);
    });
}
