"""What the tests share, one module per concern (fixtures stay in conftest.py, helpers live here):

- data: where the test data is (ROOT, DATA, DEMO, DEMO_DIR, BUNDLED, CASES) and load_cases;
- rules: one way to build a rules directory (rules_tree, copy_demo, copy_bundled, write_quiet) and
  to edit documents in it (edit, replace_once, write_atomically, canonical_hash);
- servers: a Service running in this process (running, make_config) and how to reach it
  (target, channel, stubs, health_status, LOOPBACK, ADMIN_TOKEN);
- processes: `liandong serve` as a subprocess (Serve, serving), its JSON log lines, wait_until, free_port;
- messages: building requests and stream batches (request, batches, answers_of);
- status: the code, message and google.rpc details of a failed call (details, Details);
- metrics: registry samples (sample) and /metrics pages (scrape, samples, value, metric);
- certs: a throw-away PKI for the TLS tests (make_certs, Certs).
"""
