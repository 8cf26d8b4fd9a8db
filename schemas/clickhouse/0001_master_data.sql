-- Master data. Every table is a ReplacingMergeTree keyed by id: a write is a
-- new row with a higher version, a delete is a row with deleted = 1. Readers
-- use FINAL (these tables are small) and filter deleted = 0.

CREATE TABLE IF NOT EXISTS sites (
    id            UInt64,
    description   String,
    timezone      String,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

CREATE TABLE IF NOT EXISTS areas (
    id            UInt64,
    site          UInt64,
    code          String,
    description   String,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

CREATE TABLE IF NOT EXISTS lines (
    id            UInt64,
    site          UInt64,
    area          UInt64,
    code          String,
    description   String,
    externalid    String,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

CREATE TABLE IF NOT EXISTS machines (
    id            UInt64,
    site          UInt64,
    line          UInt64,
    code          String,
    description   String,
    externalid    String,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

CREATE TABLE IF NOT EXISTS products (
    id               UInt64,
    site             UInt64,
    code             String,
    description      String,
    ideal_cycle_time Float64,
    fallback         UInt8,
    created          DateTime,
    lastupdated      DateTime,
    createdby        String,
    lastupdatedby    String,
    deleted          UInt8,
    version          UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

CREATE TABLE IF NOT EXISTS reasons (
    id            UInt64,
    site          UInt64,
    code          String,
    description   String,
    kind          Enum8('scrap' = 1, 'downtime' = 2),
    planned       UInt8,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

CREATE TABLE IF NOT EXISTS users (
    id            UInt64,
    username      String,
    admin         UInt8,
    sites         Array(UInt64),
    active        UInt8,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

-- API keys are stored as the hex SHA-256 of the whole key; prefix is the
-- short public part shown in listings and logs.
CREATE TABLE IF NOT EXISTS apikeys (
    id            UInt64,
    user          UInt64,
    prefix        String,
    hash          String,
    scopes        Array(String),
    active        UInt8,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;

-- Secret keys sign security-sensitive calls (HMAC-SHA512); the server name
-- identifies which secret a signed call used.
CREATE TABLE IF NOT EXISTS secretkeys (
    id            UInt64,
    user          UInt64,
    server        String,
    secret        String,
    active        UInt8,
    created       DateTime,
    lastupdated   DateTime,
    createdby     String,
    lastupdatedby String,
    deleted       UInt8,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id;
