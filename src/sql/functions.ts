/**
 * What a function call can do that the call does not show. Functions that
 * reach files, other servers, other sessions or settings are dangerous;
 * functions that run SQL given as a string are dangerous too (the SQL inside
 * is never judged). Any function not known to be a plain computation is
 * opaque: its body could do anything, so a rule must allow it by name.
 */

/** Names are lower case, without schema (pg_catalog is implied for builtins). */
export const DANGEROUS_FUNCTIONS: ReadonlySet<string> = new Set([
  // server files
  'pg_read_file',
  'pg_read_binary_file',
  'pg_ls_dir',
  'pg_ls_logdir',
  'pg_ls_waldir',
  'pg_ls_tmpdir',
  'pg_ls_archive_statusdir',
  'pg_stat_file',
  'pg_file_write',
  'pg_file_rename',
  'pg_file_unlink',
  'lo_import',
  'lo_export',
  'lo_from_bytea',
  // other servers
  'dblink',
  'dblink_exec',
  'dblink_connect',
  'dblink_connect_u',
  'dblink_send_query',
  'dblink_open',
  'dblink_fetch',
  // other sessions and the server itself
  'pg_terminate_backend',
  'pg_cancel_backend',
  'pg_reload_conf',
  'pg_rotate_logfile',
  'pg_promote',
  'pg_switch_wal',
  'pg_create_restore_point',
  'pg_logical_emit_message',
  'pg_advisory_lock',
  // settings (SET ROLE and friends in disguise)
  'set_config',
  // SQL given as a string: what runs inside is invisible to analysis
  'query_to_xml',
  'query_to_xml_and_xmlschema',
  'query_to_xmlschema',
  'cursor_to_xml',
  'table_to_xml',
  'table_to_xml_and_xmlschema',
  'database_to_xml',
  'schema_to_xml',
]);

/** Builtins that only compute from their arguments (or read the clock, the session's own identity...). */
const TRANSPARENT_FUNCTIONS: ReadonlySet<string> = new Set(
  `abs ceil ceiling floor round trunc sign sqrt cbrt power pow exp ln log log10 mod div greatest least random
   width_bucket pi degrees radians sin cos tan asin acos atan atan2 gcd lcm factorial scale min_scale trim_scale
   count sum avg min max bool_and bool_or every string_agg array_agg json_agg jsonb_agg json_object_agg
   jsonb_object_agg stddev stddev_pop stddev_samp variance var_pop var_samp percentile_cont percentile_disc mode
   corr covar_pop covar_samp regr_slope regr_intercept bit_and bit_or bit_xor any_value range_agg
   row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
   length char_length character_length octet_length bit_length lower upper initcap concat concat_ws substr
   substring left right lpad rpad trim btrim ltrim rtrim replace translate position strpos split_part
   regexp_replace regexp_match regexp_matches regexp_split_to_array regexp_split_to_table regexp_like regexp_count
   regexp_substr regexp_instr reverse repeat format md5 sha224 sha256 sha384 sha512 encode decode ascii chr
   starts_with to_char to_number to_date to_timestamp quote_ident quote_literal quote_nullable string_to_array
   array_to_string unistr normalize casefold overlay
   now current_date current_time current_timestamp localtime localtimestamp clock_timestamp statement_timestamp
   transaction_timestamp timeofday age date_part date_trunc date_bin extract make_date make_time make_timestamp
   make_timestamptz make_interval justify_days justify_hours justify_interval isfinite to_timestamp
   coalesce nullif greatest least
   array_length array_lower array_upper array_dims array_ndims array_position array_positions array_append
   array_prepend array_cat array_remove array_replace cardinality unnest generate_series generate_subscripts
   json_build_object jsonb_build_object json_build_array jsonb_build_array to_json to_jsonb row_to_json
   array_to_json json_array_length jsonb_array_length json_each jsonb_each json_each_text jsonb_each_text
   json_extract_path jsonb_extract_path json_extract_path_text jsonb_extract_path_text json_object_keys
   jsonb_object_keys json_array_elements jsonb_array_elements json_array_elements_text jsonb_array_elements_text
   json_typeof jsonb_typeof jsonb_set jsonb_insert jsonb_strip_nulls json_strip_nulls jsonb_pretty
   jsonb_path_query jsonb_path_query_array jsonb_path_query_first jsonb_path_exists jsonb_path_match
   json_populate_record jsonb_populate_record json_to_record jsonb_to_record json_to_recordset jsonb_to_recordset
   gen_random_uuid uuidv4 uuidv7 pg_typeof pg_column_size num_nonnulls num_nulls
   current_user session_user current_role user current_schema current_schemas current_database current_catalog
   version pg_backend_pid inet_client_addr inet_server_addr pg_postmaster_start_time current_setting
   pg_sleep pg_sleep_for txid_current pg_current_xact_id has_table_privilege has_column_privilege
   has_schema_privilege has_database_privilege pg_has_role
   tsvector to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank ts_rank_cd
   ts_headline setweight
   host hostmask masklen netmask network family abbrev broadcast set_masklen inet_merge
   nextval currval setval lastval`
    .split(/\s+/)
    .filter(Boolean),
);

/** A function name as written (possibly schema-qualified), reduced to how it is looked up here. */
export function functionKey(qualified: string): string {
  return qualified.startsWith('pg_catalog.') ? qualified.slice('pg_catalog.'.length) : qualified;
}

export function isDangerous(qualified: string): boolean {
  return DANGEROUS_FUNCTIONS.has(functionKey(qualified));
}

export function isOpaque(qualified: string): boolean {
  const key = functionKey(qualified);
  return !TRANSPARENT_FUNCTIONS.has(key) && !DANGEROUS_FUNCTIONS.has(key);
}
