/**
 * TLS code points we name. Protocol enums stay open: a value not listed here
 * is kept as a number and survives decode/encode unchanged.
 * Sources: IANA TLS registries; RFC 8446 §4.2, RFC 6066, RFC 7301, RFC 9849 §11.
 */

export const ContentType = {
  change_cipher_spec: 20,
  alert: 21,
  handshake: 22,
  application_data: 23,
} as const;

export const HandshakeType = {
  client_hello: 1,
  server_hello: 2,
  new_session_ticket: 4,
  end_of_early_data: 5,
  encrypted_extensions: 8,
  certificate: 11,
  certificate_request: 13,
  certificate_verify: 15,
  finished: 20,
  key_update: 24,
  message_hash: 254,
} as const;

export const ExtensionType = {
  server_name: 0,
  max_fragment_length: 1,
  status_request: 5,
  supported_groups: 10,
  ec_point_formats: 11,
  signature_algorithms: 13,
  use_srtp: 14,
  heartbeat: 15,
  application_layer_protocol_negotiation: 16,
  signed_certificate_timestamp: 18,
  padding: 21,
  encrypt_then_mac: 22,
  extended_master_secret: 23,
  compress_certificate: 27,
  record_size_limit: 28,
  session_ticket: 35,
  pre_shared_key: 41,
  early_data: 42,
  supported_versions: 43,
  cookie: 44,
  psk_key_exchange_modes: 45,
  certificate_authorities: 47,
  post_handshake_auth: 49,
  signature_algorithms_cert: 50,
  key_share: 51,
  application_settings: 17613,
  ech_outer_extensions: 0xfd00,
  encrypted_client_hello: 0xfe0d,
  renegotiation_info: 0xff01,
  /** draft-ietf-tls-esni-02 (the 2018 ESNI); recognised by name only. */
  encrypted_server_name: 0xffce,
} as const;

const extensionNames = new Map<number, string>(Object.entries(ExtensionType).map(([k, v]) => [v, k]));

/** RFC 8701 GREASE values: 0x?A?A with both bytes equal. */
export function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
}

export function extensionName(type: number): string {
  const n = extensionNames.get(type);
  if (n) return n;
  if (isGrease(type)) return 'grease';
  return `unknown_${type}`;
}

export const ProtocolVersion = {
  SSL3: 0x0300,
  TLS10: 0x0301,
  TLS11: 0x0302,
  TLS12: 0x0303,
  TLS13: 0x0304,
} as const;

export const NamedGroup = {
  secp256r1: 0x0017,
  secp384r1: 0x0018,
  x25519: 0x001d,
  X25519MLKEM768: 0x11ec,
} as const;

export const AlertDescription = {
  close_notify: 0,
  unexpected_message: 10,
  bad_record_mac: 20,
  bad_certificate: 42,
  certificate_unknown: 46,
  unknown_ca: 48,
  user_canceled: 90,
  record_overflow: 22,
  handshake_failure: 40,
  illegal_parameter: 47,
  decode_error: 50,
  decrypt_error: 51,
  protocol_version: 70,
  internal_error: 80,
  missing_extension: 109,
  unsupported_extension: 110,
  unrecognized_name: 112,
  ech_required: 121,
  no_application_protocol: 120,
} as const;

/** RFC 8446 §5.1: a plaintext record fragment is at most 2^14 bytes. */
export const MAX_PLAINTEXT = 1 << 14;
