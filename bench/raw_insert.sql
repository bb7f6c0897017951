INSERT INTO bench_raw (payload) VALUES ('{"i": 1}');
