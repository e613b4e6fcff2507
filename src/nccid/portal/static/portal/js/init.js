// Start the NHS.UK frontend's components (header menu, file upload, skip link, ...).
import { initAll } from '../../nhsuk/nhsuk-frontend.min.js'

initAll()
