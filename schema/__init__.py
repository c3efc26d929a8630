"""stormd's tables, split by domain, on one declarative Base.

Importing this package registers every model on `Base.metadata` (Alembic and tests use it).
"""

from stormd.schema.automations import AutomationExecution, AutomationWorkflow
from stormd.schema.base import Base
from stormd.schema.campaigns import CampaignTemplate, EmailCampaign
from stormd.schema.carts import Cart, CartAbandonmentEvent, CartItem
from stormd.schema.cron import CronRun
from stormd.schema.customers import Customer, DndNumber
from stormd.schema.inbox import OutboundEvent, ProcessedEvent
from stormd.schema.messages import (
    EmailEvent,
    Message,
    SmsLog,
    SmsProvider,
    WhatsAppMessage,
    WhatsAppTemplate,
)
from stormd.schema.orders import Order, OrderItem, OrderStatusChange
from stormd.schema.products import Product
from stormd.schema.promotions import AppliedPromotion, DiscountCode
from stormd.schema.recommendations import RecommendationEvent
from stormd.schema.rfm import CustomerLifecycleMetrics, CustomerRFMSnapshot, RfmRun
from stormd.schema.segments import CustomerSegment, CustomerSegmentMember, RescoreQueue
from stormd.schema.stores import Store
from stormd.schema.timers import Timer

__all__ = [
    "AppliedPromotion", "AutomationExecution", "AutomationWorkflow", "Base", "CampaignTemplate",
    "Cart", "CartAbandonmentEvent", "CartItem", "CronRun", "Customer", "CustomerLifecycleMetrics",
    "CustomerRFMSnapshot", "CustomerSegment", "CustomerSegmentMember", "DiscountCode",
    "DndNumber", "EmailCampaign", "EmailEvent", "Message", "Order", "OrderItem",
    "OrderStatusChange", "OutboundEvent", "ProcessedEvent", "Product", "RecommendationEvent",
    "RescoreQueue", "RfmRun", "SmsLog", "SmsProvider", "Store", "Timer", "WhatsAppMessage",
    "WhatsAppTemplate",
]
