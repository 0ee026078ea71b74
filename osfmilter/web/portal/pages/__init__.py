"""The portal's pages, one router per page (or group of pages) in a module of its own."""
