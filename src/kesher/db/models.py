"""Imports every package's models so that metadata and migrations see all tables."""

from kesher.accounts import models as accounts  # noqa: F401
from kesher.contacts import models as contacts  # noqa: F401
from kesher.events import models as events  # noqa: F401
from kesher.segments import models as segments  # noqa: F401
from kesher.channels import models as channels  # noqa: F401
from kesher.messages import models as messages  # noqa: F401
from kesher.campaigns import models as campaigns  # noqa: F401
from kesher.policy import models as policy  # noqa: F401
from kesher.db.base import Base

metadata = Base.metadata
