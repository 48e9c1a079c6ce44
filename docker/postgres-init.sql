-- The database the test suite uses (RERANK_TEST_POSTGRES_URL defaults to it).
CREATE DATABASE test;
