"""Opening the user's files so that they cannot hurt: images (:mod:`.images`: regular files only, a pixel
limit read before decoding) and payloads inside containers (:mod:`.files`: tar members, Arrow rows).
Ingest, the explorer's views, the report and the app all read media through here. Nothing here writes."""
