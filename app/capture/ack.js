// Invisible companion of capture.js: hands the server's acknowledgements (session -> last stored
// seq) to the capture component of the same mount through window, without re-rendering it.
export default function ({ data }) {
  window.__telltaleAcks = window.__telltaleAcks || {};
  window.__telltaleAcks[data.mount_key] = data.ack || {};
}
