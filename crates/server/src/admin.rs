//! Admin HTTP: `/ready`, `/metrics`, `/debug/syncz`, `/debug/config_dump`, `/debug/registryz`, `/debug/configz`.
